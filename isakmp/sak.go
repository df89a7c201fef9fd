package isakmp

// KEKAttr is a KEK attribute type inside a SAK payload (RFC 6407 §5.3;
// KEK_ACK_REQUESTED from RFC 8263 §4).
type KEKAttr uint16

const (
	KEKManagementAlgorithm KEKAttr = 1 // B, values KEKMgmt*
	KEKAlgorithm           KEKAttr = 2 // B, values KEKAlg*
	KEKKeyLength           KEKAttr = 3 // B, bits of cipher key (no IV)
	KEKKeyLifetime         KEKAttr = 4 // V, 4-octet seconds
	KEKSigHashAlgorithm    KEKAttr = 5 // B, values SigHash*
	KEKSigAlgorithm        KEKAttr = 6 // B, values SigAlg*
	KEKSigKeyLength        KEKAttr = 7 // B, bits
	KEKAckRequested        KEKAttr = 9 // B, RFC 8263 §4: value KEKAckCumulative
)

var kekAttrNames = map[KEKAttr]string{
	KEKManagementAlgorithm: "KEK_MANAGEMENT_ALGORITHM", KEKAlgorithm: "KEK_ALGORITHM",
	KEKKeyLength: "KEK_KEY_LENGTH", KEKKeyLifetime: "KEK_KEY_LIFETIME",
	KEKSigHashAlgorithm: "SIG_HASH_ALGORITHM", KEKSigAlgorithm: "SIG_ALGORITHM",
	KEKSigKeyLength: "SIG_KEY_LENGTH", KEKAckRequested: "KEK_ACK_REQUESTED",
}

func (a KEKAttr) String() string { return nameOf(kekAttrNames, a, "KEK_ATTR") }

// KEK_MANAGEMENT_ALGORITHM values (RFC 6407 §5.3.1).
const KEKMgmtLKH uint16 = 1

// KEKAlg is a KEK_ALGORITHM value (RFC 6407 §5.3.2); AES is used in CBC
// mode (§5.3.2.3).
type KEKAlg uint16

const (
	KEKAlgDES  KEKAlg = 1
	KEKAlg3DES KEKAlg = 2
	KEKAlgAES  KEKAlg = 3
)

var kekAlgNames = map[KEKAlg]string{KEKAlgDES: "KEK_ALG_DES", KEKAlg3DES: "KEK_ALG_3DES", KEKAlgAES: "KEK_ALG_AES"}

func (a KEKAlg) String() string { return nameOf(kekAlgNames, a, "KEK_ALG") }

// SigHash is a SIG_HASH_ALGORITHM value (RFC 6407 §5.3.5).
type SigHash uint16

const (
	SigHashMD5    SigHash = 1
	SigHashSHA1   SigHash = 2
	SigHashSHA256 SigHash = 3
	SigHashSHA384 SigHash = 4
	SigHashSHA512 SigHash = 5
)

var sigHashNames = map[SigHash]string{
	SigHashMD5: "SIG_HASH_MD5", SigHashSHA1: "SIG_HASH_SHA1", SigHashSHA256: "SIG_HASH_SHA256",
	SigHashSHA384: "SIG_HASH_SHA384", SigHashSHA512: "SIG_HASH_SHA512",
}

func (h SigHash) String() string { return nameOf(sigHashNames, h, "SIG_HASH") }

// SigAlg is a SIG_ALGORITHM value (RFC 6407 §5.3.6). RSA is
// EMSA-PKCS1-v1_5; the ECDSA values imply their hash and use the RFC 4754
// r||s signature format.
type SigAlg uint16

const (
	SigAlgRSA      SigAlg = 1
	SigAlgDSS      SigAlg = 2
	SigAlgECDSS    SigAlg = 3
	SigAlgECDSA256 SigAlg = 4
	SigAlgECDSA384 SigAlg = 5
	SigAlgECDSA521 SigAlg = 6
)

var sigAlgNames = map[SigAlg]string{
	SigAlgRSA: "SIG_ALG_RSA", SigAlgDSS: "SIG_ALG_DSS", SigAlgECDSS: "SIG_ALG_ECDSS",
	SigAlgECDSA256: "SIG_ALG_ECDSA-256", SigAlgECDSA384: "SIG_ALG_ECDSA-384", SigAlgECDSA521: "SIG_ALG_ECDSA-521",
}

func (a SigAlg) String() string { return nameOf(sigAlgNames, a, "SIG_ALG") }

// KEKSPILen is the length of the KEK SPI: the GROUPKEY-PUSH header's
// initiator and responder cookies (RFC 6407 §5.3).
const KEKSPILen = 16

// SAK is the SA KEK payload (RFC 6407 §5.3, Figure 5): the policy of the
// rekey SA. It appears only inside a GroupSA.
//
//	! Next Payload  !   RESERVED    !         Payload Length        !
//	!    Protocol   !  SRC ID Type  !         SRC ID Port           !
//	!SRC ID Data Len!          SRC Identification Data              ~
//	! DST ID Type   !         DST ID Port           !DST ID Data Len!
//	!                    DST Identification Data                    ~
//	~                         SPI (16 octets)                       ~
//	!                       RESERVED2 (4 octets)                    !
//	~                        KEK Attributes                         ~
//
// Between the SPI and the attributes lie exactly 4 octets: "RESERVED2
// (4 octets) -- MUST be zero. These octets represent fields previously
// defined but no longer used by GDOI" (RFC 6407 §5.3); they were the POP
// Algorithm and POP Key Length of RFC 3547 §5.3. They are written as zero
// and a non-zero value is rejected.
type SAK struct {
	Selector   // Protocol and SRC/DST of the GROUPKEY-PUSH datagrams
	SPI        [KEKSPILen]byte
	Attributes Attributes // KEKAttr types
}

func (*SAK) Type() PayloadType { return PayloadSAK }
func (p *SAK) BodyLen() int    { return p.Selector.len() + KEKSPILen + 4 + p.Attributes.Len() }

func (p *SAK) AppendBody(b []byte) []byte {
	b = p.Selector.append(b)
	b = append(b, p.SPI[:]...)
	b = append(b, 0, 0, 0, 0)
	return p.Attributes.Append(b)
}

func parseSAK(b []byte) (*SAK, error) {
	r := newReader("SAK payload", b)
	p := &SAK{}
	p.Selector.parse(r)
	copy(p.SPI[:], r.take(KEKSPILen))
	r.reserved(4, "RESERVED2")
	if r.err != nil {
		return p, r.err
	}
	as, err := parseAttributes(b[r.off:])
	if err != nil {
		return p, wrapAt("SAK payload", r.off, err)
	}
	p.Attributes = as
	return p, nil
}

// Cookies splits the KEK SPI into the GROUPKEY-PUSH header cookies.
func (p *SAK) Cookies() (icookie, rcookie Cookie) {
	copy(icookie[:], p.SPI[:8])
	copy(rcookie[:], p.SPI[8:])
	return
}

// KEK_ACK_REQUESTED values (RFC 8263 §2): the PRF and base key a GM uses to
// authenticate its GROUPKEY-PUSH acknowledgement.
const (
	AckKEKSHA256 uint16 = 1 // REKEY_ACK_KEK_SHA256
	AckLKHSHA256 uint16 = 2 // REKEY_ACK_LKH_SHA256
	AckKEKSHA512 uint16 = 3 // REKEY_ACK_KEK_SHA512
	AckLKHSHA512 uint16 = 4 // REKEY_ACK_LKH_SHA512
)
