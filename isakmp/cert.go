package isakmp

// CertEncoding is the Certificate Encoding of CERT and the Cert. Type of CR
// payloads (RFC 2408 §3.9).
type CertEncoding uint8

const (
	CertNone          CertEncoding = 0
	CertPKCS7         CertEncoding = 1
	CertPGP           CertEncoding = 2
	CertDNSSignedKey  CertEncoding = 3
	CertX509Sig       CertEncoding = 4
	CertX509KeyExch   CertEncoding = 5
	CertKerberos      CertEncoding = 6
	CertCRL           CertEncoding = 7
	CertARL           CertEncoding = 8
	CertSPKI          CertEncoding = 9
	CertX509Attribute CertEncoding = 10
)

var certEncodingNames = map[CertEncoding]string{
	CertNone: "NONE", CertPKCS7: "PKCS7", CertPGP: "PGP", CertDNSSignedKey: "DNS_SIGNED_KEY",
	CertX509Sig: "X509_SIGNATURE", CertX509KeyExch: "X509_KEY_EXCHANGE", CertKerberos: "KERBEROS",
	CertCRL: "CRL", CertARL: "ARL", CertSPKI: "SPKI", CertX509Attribute: "X509_ATTRIBUTE",
}

func (c CertEncoding) String() string { return nameOf(certEncodingNames, c, "CERT_ENCODING") }

// Cert is the Certificate payload (RFC 2408 §3.9):
//
//	! Next Payload  !   RESERVED    !         Payload Length        !
//	! Cert Encoding !                                               !
//	+-+-+-+-+-+-+-+-+                                               !
//	~                       Certificate Data                        ~
type Cert struct {
	Encoding CertEncoding
	Data     []byte // for CertX509Sig: one DER certificate
}

func (*Cert) Type() PayloadType { return PayloadCert }
func (p *Cert) BodyLen() int    { return 1 + len(p.Data) }
func (p *Cert) AppendBody(b []byte) []byte {
	return append(append(b, byte(p.Encoding)), p.Data...)
}

func parseCert(b []byte) (*Cert, error) {
	r := newReader("CERT payload", b)
	p := &Cert{Encoding: CertEncoding(r.u8()), Data: r.rest()}
	return p, r.done()
}

// CertRequest is the Certificate Request payload (RFC 2408 §3.10):
//
//	! Next Payload  !   RESERVED    !         Payload Length        !
//	!  Cert. Type   !                                               !
//	+-+-+-+-+-+-+-+-+                                               !
//	~                    Certificate Authority                      ~
//
// For X.509 the authority is a DER Distinguished Name; empty asks for any.
type CertRequest struct {
	CertType  CertEncoding
	Authority []byte
}

func (*CertRequest) Type() PayloadType { return PayloadCR }
func (p *CertRequest) BodyLen() int    { return 1 + len(p.Authority) }
func (p *CertRequest) AppendBody(b []byte) []byte {
	return append(append(b, byte(p.CertType)), p.Authority...)
}

func parseCertRequest(b []byte) (*CertRequest, error) {
	r := newReader("CR payload", b)
	p := &CertRequest{CertType: CertEncoding(r.u8()), Authority: r.rest()}
	return p, r.done()
}
