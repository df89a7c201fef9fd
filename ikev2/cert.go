package ikev2

// CertEncoding is a Certificate Encoding (RFC 7296 §3.6; IANA "IKEv2
// Certificate Encodings").
type CertEncoding uint8

const (
	CertPKCS7         CertEncoding = 1
	CertPGP           CertEncoding = 2
	CertDNSSignedKey  CertEncoding = 3
	CertX509Sig       CertEncoding = 4
	CertKerberos      CertEncoding = 6
	CertCRL           CertEncoding = 7
	CertARL           CertEncoding = 8
	CertSPKI          CertEncoding = 9
	CertX509Attr      CertEncoding = 10
	CertRawRSA        CertEncoding = 11
	CertHashURLX509   CertEncoding = 12
	CertHashURLBundle CertEncoding = 13
	CertOCSP          CertEncoding = 14 // RFC 4806
	CertRawPublicKey  CertEncoding = 15 // RFC 7670
)

// Cert is the Certificate payload (RFC 7296 §3.6, Figure 12):
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Next Payload  |C|  RESERVED   |         Payload Length        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Cert Encoding |                                               |
//	+-+-+-+-+-+-+-+-+                                               |
//	~                       Certificate Data                        ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// For X509_CERT_SIG the data is one DER certificate; the codec does not
// parse it (crypto/x509 does, in the SA layer).
type Cert struct {
	Encoding CertEncoding
	Data     []byte
}

func (*Cert) Type() PayloadType            { return PayloadCERT }
func (p *Cert) BodyLen() int               { return 1 + len(p.Data) }
func (p *Cert) AppendBody(b []byte) []byte { return append(append(b, byte(p.Encoding)), p.Data...) }

func parseCert(b []byte) (*Cert, error) {
	r := newReader("CERT payload", b)
	p := &Cert{Encoding: CertEncoding(r.u8())}
	p.Data = r.rest()
	return p, r.done()
}

// CertReq is the Certificate Request payload (RFC 7296 §3.7, Figure 13):
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Next Payload  |C|  RESERVED   |         Payload Length        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Cert Encoding |                                               |
//	+-+-+-+-+-+-+-+-+                                               |
//	~                    Certification Authority                    ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// For X509_CERT_SIG, Authority is a concatenation of 20-octet SHA-1 hashes
// of trust anchors' public keys (SubjectPublicKeyInfo); Hashes splits it.
type CertReq struct {
	Encoding  CertEncoding
	Authority []byte
}

func (*CertReq) Type() PayloadType { return PayloadCERTREQ }
func (p *CertReq) BodyLen() int    { return 1 + len(p.Authority) }
func (p *CertReq) AppendBody(b []byte) []byte {
	return append(append(b, byte(p.Encoding)), p.Authority...)
}

// Hashes splits Authority into its 20-octet SHA-1 hashes; ok is false when
// the length is not a multiple of 20.
func (p *CertReq) Hashes() (hs [][]byte, ok bool) {
	if len(p.Authority)%20 != 0 {
		return nil, false
	}
	for i := 0; i < len(p.Authority); i += 20 {
		hs = append(hs, p.Authority[i:i+20:i+20])
	}
	return hs, true
}

func parseCertReq(b []byte) (*CertReq, error) {
	r := newReader("CERTREQ payload", b)
	p := &CertReq{Encoding: CertEncoding(r.u8())}
	p.Authority = r.rest()
	return p, r.done()
}
