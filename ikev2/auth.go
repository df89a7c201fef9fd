package ikev2

// AuthMethod is an Authentication Method (RFC 7296 §3.8; IANA "IKEv2
// Authentication Method").
type AuthMethod uint8

const (
	AuthRSASig           AuthMethod = 1  // RFC 7296: PKCS#1 v1.5 with SHA-1
	AuthPSK              AuthMethod = 2  // RFC 7296: Shared Key Message Integrity Code
	AuthDSSSig           AuthMethod = 3  // RFC 7296
	AuthECDSA256         AuthMethod = 9  // RFC 4754
	AuthECDSA384         AuthMethod = 10 // RFC 4754
	AuthECDSA521         AuthMethod = 11 // RFC 4754
	AuthGSPAM            AuthMethod = 12 // RFC 6467
	AuthNull             AuthMethod = 13 // RFC 7619
	AuthDigitalSignature AuthMethod = 14 // RFC 7427
)

// Auth is the Authentication payload (RFC 7296 §3.8, Figure 14):
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Next Payload  |C|  RESERVED   |         Payload Length        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Auth Method   |                RESERVED                       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                      Authentication Data                      ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// For Auth Method 14, Digital Signature (RFC 7427 §3, Figure 1), the
// Authentication Data is itself structured:
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| ASN.1 Length  | AlgorithmIdentifier ASN.1 object              |
//	+-+-+-+-+-+-+-+-+                                               +
//	~         AlgorithmIdentifier ASN.1 object continuing           ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                         Signature Value                       ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Parsing checks that the ASN.1 Length fits (the DER inside is the SA
// layer's to match against the algorithms it accepts); Signature splits it.
// RFC 9838 uses the same payload for the GCKS's signature over a
// GSA_REKEY message (§4.1.2 "AUTH").
type Auth struct {
	Method AuthMethod
	Data   []byte
}

// NewSignatureAuth returns a Digital Signature (method 14) AUTH payload
// from the DER AlgorithmIdentifier and the signature value; algID may not
// exceed 255 octets (Marshal refuses it then, see Check).
func NewSignatureAuth(algID, sig []byte) *Auth {
	d := make([]byte, 0, 1+len(algID)+len(sig))
	d = append(d, byte(len(algID)))
	d = append(d, algID...)
	return &Auth{Method: AuthDigitalSignature, Data: append(d, sig...)}
}

// Signature splits the Authentication Data of a method-14 AUTH payload
// into the AlgorithmIdentifier and the signature value.
func (p *Auth) Signature() (algID, sig []byte, err error) {
	if p.Method != AuthDigitalSignature {
		return nil, nil, errMalformed("AUTH payload", 0, "method %s is not %s", p.Method, AuthDigitalSignature)
	}
	return splitSignature(p.Data)
}

func splitSignature(d []byte) (algID, sig []byte, err error) {
	r := newReader("AUTH digital signature", d)
	n := int(r.u8())
	if r.err == nil && n == 0 {
		r.failAt(0, "ASN.1 Length is 0")
	}
	algID = r.bytes(n)
	sig = r.rest()
	if r.err == nil && len(sig) == 0 {
		r.fail("no Signature Value")
	}
	return algID, sig, r.err
}

func (*Auth) Type() PayloadType { return PayloadAUTH }
func (p *Auth) BodyLen() int    { return 4 + len(p.Data) }
func (p *Auth) AppendBody(b []byte) []byte {
	b = append(b, byte(p.Method), 0, 0, 0)
	return append(b, p.Data...)
}

func parseAuth(b []byte) (*Auth, error) {
	r := newReader("AUTH payload", b)
	p := &Auth{Method: AuthMethod(r.u8())}
	r.skip(3)
	p.Data = r.rest()
	if r.err == nil && len(p.Data) == 0 {
		r.fail("no Authentication Data")
	}
	if r.err == nil && p.Method == AuthDigitalSignature {
		if _, _, err := splitSignature(p.Data); err != nil {
			r.err = wrapAt("AUTH payload", 4, err)
		}
	}
	return p, r.done()
}
