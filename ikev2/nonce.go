package ikev2

// Nonce sizes (RFC 7296 §3.9: "The size of the Nonce Data MUST be between
// 16 and 256 octets, inclusive").
const (
	MinNonceLen = 16
	MaxNonceLen = 256
)

// Nonce is the Nonce payload, Ni or Nr (RFC 7296 §3.9, Figure 15):
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Next Payload  |C|  RESERVED   |         Payload Length        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                            Nonce Data                         ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Parsing refuses a size outside MinNonceLen..MaxNonceLen.
type Nonce struct {
	Data []byte
}

func (*Nonce) Type() PayloadType            { return PayloadNonce }
func (p *Nonce) BodyLen() int               { return len(p.Data) }
func (p *Nonce) AppendBody(b []byte) []byte { return append(b, p.Data...) }

func parseNonce(b []byte) (*Nonce, error) {
	if len(b) < MinNonceLen || len(b) > MaxNonceLen {
		return nil, errMalformed("Nonce payload", 0, "%d octets of Nonce Data (must be %d to %d)", len(b), MinNonceLen, MaxNonceLen)
	}
	return &Nonce{Data: own(b)}, nil
}
