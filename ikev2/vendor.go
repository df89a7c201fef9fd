package ikev2

// VendorID is the Vendor ID payload (RFC 7296 §3.12, Figure 18):
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Next Payload  |C|  RESERVED   |         Payload Length        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                        Vendor ID (VID)                        ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type VendorID struct {
	Data []byte
}

func (*VendorID) Type() PayloadType            { return PayloadVendorID }
func (p *VendorID) BodyLen() int               { return len(p.Data) }
func (p *VendorID) AppendBody(b []byte) []byte { return append(b, p.Data...) }

func parseVendorID(b []byte) (*VendorID, error) {
	return &VendorID{Data: own(b)}, nil
}
