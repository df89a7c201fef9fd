package isakmp

// IKEAttr is a phase-1 (Oakley) attribute class (RFC 2409 Appendix A).
type IKEAttr uint16

const (
	IKEEncryptionAlgorithm IKEAttr = 1  // B
	IKEHashAlgorithm       IKEAttr = 2  // B
	IKEAuthMethod          IKEAttr = 3  // B
	IKEGroupDescription    IKEAttr = 4  // B
	IKEGroupType           IKEAttr = 5  // B
	IKELifeType            IKEAttr = 11 // B
	IKELifeDuration        IKEAttr = 12 // V
	IKEPRF                 IKEAttr = 13 // B
	IKEKeyLength           IKEAttr = 14 // B
)

var ikeAttrNames = map[IKEAttr]string{
	IKEEncryptionAlgorithm: "Encryption-Algorithm", IKEHashAlgorithm: "Hash-Algorithm",
	IKEAuthMethod: "Authentication-Method", IKEGroupDescription: "Group-Description",
	IKEGroupType: "Group-Type", IKELifeType: "Life-Type", IKELifeDuration: "Life-Duration",
	IKEPRF: "PRF", IKEKeyLength: "Key-Length",
}

func (a IKEAttr) String() string { return nameOf(ikeAttrNames, a, "IKE_ATTR") }

// Phase-1 attribute values (RFC 2409 Appendix A; AES-CBC RFC 3602; SHA-2
// RFC 4868 registry values; ECDSA authentication RFC 4754 §3).
const (
	Enc3DESCBC uint16 = 5 // 3DES-CBC
	EncAESCBC  uint16 = 7 // AES-CBC

	HashSHA1   uint16 = 2
	HashSHA256 uint16 = 4
	HashSHA384 uint16 = 5
	HashSHA512 uint16 = 6

	AuthPSK         uint16 = 1
	AuthDSSSig      uint16 = 2
	AuthRSASig      uint16 = 3
	AuthECDSASHA256 uint16 = 9  // P-256
	AuthECDSASHA384 uint16 = 10 // P-384
	AuthECDSASHA512 uint16 = 11 // P-521

	LifeSeconds   uint16 = 1
	LifeKilobytes uint16 = 2
)

// IPsecAttr is an IPsec DOI SA attribute class (RFC 2407 §4.5), used in
// phase-2 transforms and in GDOI SAT payloads (RFC 6407 §5.5.1), with RFC
// 6407's Address Preservation and SA Direction (§5.5.1.1).
type IPsecAttr uint16

const (
	IPsecSALifeType          IPsecAttr = 1  // B: LifeSeconds, LifeKilobytes
	IPsecSALifeDuration      IPsecAttr = 2  // V (or B)
	IPsecGroupDescription    IPsecAttr = 3  // B; MUST NOT be sent in GDOI
	IPsecEncapsulationMode   IPsecAttr = 4  // B: EncapTunnel, EncapTransport
	IPsecAuthAlgorithm       IPsecAttr = 5  // B: Auth* values
	IPsecKeyLength           IPsecAttr = 6  // B: bits
	IPsecKeyRounds           IPsecAttr = 7  // B
	IPsecExtendedSeq         IPsecAttr = 11 // B, RFC 4304
	IPsecAddressPreservation IPsecAttr = 14 // B, RFC 6407 §5.5.1.1.1
	IPsecSADirection         IPsecAttr = 15 // B, RFC 6407 §5.5.1.1.2

	// groupvpn's anti-replay policy, in the range RFC 2407 §4.5 leaves
	// "for private use among mutually consenting parties" (32001-32767);
	// docs/wire.md defines them.
	IPsecReplayMethod IPsecAttr = 32001 // B: ReplayCounter, ReplayTime, ReplayNone
	IPsecReplayWindow IPsecAttr = 32002 // B: packets (counter) or seconds (time)
	IPsecPseudotime   IPsecAttr = 32003 // V, 8 octets: the KS's pseudotime in ms
	// IPsecConfiguredLifetime is the TEK's configured lifetime in seconds
	// (SA Life Duration carries what remains): TEK_CLT of the seed's
	// shortening formula.
	IPsecConfiguredLifetime IPsecAttr = 32004 // V, 4 octets
	// IPsecBypassBefore and IPsecBypassAfter carry the deny entries of
	// the KS's match ACL (traffic a GM passes in the clear) around the
	// permit entry the SAT is for, in ACL order: the ones between the
	// previous permit entry and this one, and (on the last SAT of an
	// `sa ipsec` only) the ones after it. The value is one or more
	// selectors back to back (AppendSelectors, ParseSelectors).
	IPsecBypassBefore IPsecAttr = 32005 // V
	IPsecBypassAfter  IPsecAttr = 32006 // V
)

// Values of IPsecReplayMethod.
const (
	ReplayCounter uint16 = 1
	ReplayTime    uint16 = 2 // time-based anti-replay (TBAR)
	ReplayNone    uint16 = 3
)

var ipsecAttrNames = map[IPsecAttr]string{
	IPsecSALifeType: "SA-Life-Type", IPsecSALifeDuration: "SA-Life-Duration",
	IPsecGroupDescription: "Group-Description", IPsecEncapsulationMode: "Encapsulation-Mode",
	IPsecAuthAlgorithm: "Authentication-Algorithm", IPsecKeyLength: "Key-Length",
	IPsecKeyRounds: "Key-Rounds", IPsecExtendedSeq: "Extended-Sequence-Number",
	IPsecAddressPreservation: "Address-Preservation", IPsecSADirection: "SA-Direction",
	IPsecReplayMethod: "groupvpn-Replay-Method", IPsecReplayWindow: "groupvpn-Replay-Window", IPsecPseudotime: "groupvpn-Pseudotime",
	IPsecConfiguredLifetime: "groupvpn-Configured-Lifetime",
	IPsecBypassBefore:       "groupvpn-Bypass-Before", IPsecBypassAfter: "groupvpn-Bypass-After",
}

func (a IPsecAttr) String() string { return nameOf(ipsecAttrNames, a, "IPSEC_ATTR") }

// Encapsulation Mode values (RFC 2407 §4.5).
const (
	EncapTunnel    uint16 = 1
	EncapTransport uint16 = 2
)

// Authentication Algorithm values (RFC 2407 §4.5; RFC 4868 for SHA-2).
const (
	AuthAlgHMACMD5    uint16 = 1
	AuthAlgHMACSHA1   uint16 = 2
	AuthAlgHMACSHA256 uint16 = 5
	AuthAlgHMACSHA384 uint16 = 6
	AuthAlgHMACSHA512 uint16 = 7
)

// Address Preservation values (RFC 6407 §5.5.1.1.1). Absent means
// source-and-destination.
const (
	AddrPreserveNone   uint16 = 1
	AddrPreserveSrc    uint16 = 2
	AddrPreserveDst    uint16 = 3
	AddrPreserveSrcDst uint16 = 4
)

// SA Direction values (RFC 6407 §5.5.1.1.2). Absent means symmetric.
const (
	SADirSenderOnly   uint16 = 1
	SADirReceiverOnly uint16 = 2
	SADirSymmetric    uint16 = 3
)

// ESPTransform is an IPsec ESP Transform Identifier (RFC 2407 §4.4.4;
// AES-CBC RFC 3602, AES-GCM RFC 4106 §8.4, NULL-AUTH-AES-GMAC RFC 4543).
type ESPTransform uint8

const (
	ESP3DES     ESPTransform = 3
	ESPNull     ESPTransform = 11
	ESPAESCBC   ESPTransform = 12
	ESPAESCTR   ESPTransform = 13
	ESPAESGCM8  ESPTransform = 18
	ESPAESGCM12 ESPTransform = 19
	ESPAESGCM16 ESPTransform = 20
	ESPAESGMAC  ESPTransform = 23
)

var espNames = map[ESPTransform]string{
	ESP3DES: "ESP_3DES", ESPNull: "ESP_NULL", ESPAESCBC: "ESP_AES-CBC", ESPAESCTR: "ESP_AES-CTR",
	ESPAESGCM8: "ESP_AES-GCM_8", ESPAESGCM12: "ESP_AES-GCM_12", ESPAESGCM16: "ESP_AES-GCM_16",
	ESPAESGMAC: "ESP_NULL_AUTH_AES-GMAC",
}

func (t ESPTransform) String() string { return nameOf(espNames, t, "ESP") }

// AHTransform is an IPsec AH Transform Identifier (RFC 2407 §4.4.3).
type AHTransform uint8

const (
	AHMD5    AHTransform = 2
	AHSHA    AHTransform = 3
	AHSHA256 AHTransform = 5
	AHSHA384 AHTransform = 6
	AHSHA512 AHTransform = 7
)

var ahNames = map[AHTransform]string{
	AHMD5: "AH_MD5", AHSHA: "AH_SHA", AHSHA256: "AH_SHA2-256", AHSHA384: "AH_SHA2-384", AHSHA512: "AH_SHA2-512",
}

func (t AHTransform) String() string { return nameOf(ahNames, t, "AH") }
