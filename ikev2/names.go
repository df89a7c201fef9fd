package ikev2

import "fmt"

// nameOf looks a code point up in a read-only name table and falls back to
// "KIND(n)" for values the table does not know, so every typed constant
// prints something an operator can search for.
func nameOf[T ~uint8 | ~uint16 | ~uint32](table map[T]string, v T, kind string) string {
	if s, ok := table[v]; ok {
		return s
	}
	return fmt.Sprintf("%s(%d)", kind, uint64(v))
}

var payloadTypeNames = map[PayloadType]string{
	PayloadNone: "NONE", PayloadSA: "SA", PayloadKE: "KE", PayloadIDi: "IDi", PayloadIDr: "IDr",
	PayloadCERT: "CERT", PayloadCERTREQ: "CERTREQ", PayloadAUTH: "AUTH", PayloadNonce: "Ni/Nr",
	PayloadNotify: "N", PayloadDelete: "D", PayloadVendorID: "V", PayloadTSi: "TSi", PayloadTSr: "TSr",
	PayloadSK: "SK", PayloadCP: "CP", PayloadEAP: "EAP", PayloadGSPM: "GSPM",
	PayloadIDg: "IDg", PayloadGSA: "GSA", PayloadKD: "KD", PayloadSKF: "SKF", PayloadPS: "PS",
}

func (t PayloadType) String() string { return nameOf(payloadTypeNames, t, "PAYLOAD") }

var exchangeNames = map[ExchangeType]string{
	ExchangeIKESAInit: "IKE_SA_INIT", ExchangeIKEAuth: "IKE_AUTH",
	ExchangeCreateChildSA: "CREATE_CHILD_SA", ExchangeInformational: "INFORMATIONAL",
	ExchangeIKESessionResume: "IKE_SESSION_RESUME",
	ExchangeGSAAuth:          "GSA_AUTH", ExchangeGSARegistration: "GSA_REGISTRATION",
	ExchangeGSARekey: "GSA_REKEY", ExchangeGSAInbandRekey: "GSA_INBAND_REKEY",
	ExchangeIKEIntermediate: "IKE_INTERMEDIATE", ExchangeIKEFollowupKE: "IKE_FOLLOWUP_KE",
}

func (e ExchangeType) String() string { return nameOf(exchangeNames, e, "EXCHANGE") }

func (f Flags) String() string {
	s := ""
	for _, x := range []struct {
		f Flags
		n string
	}{{FlagInitiator, "I"}, {FlagVersion, "V"}, {FlagResponse, "R"}} {
		if f&x.f != 0 {
			s += x.n
		}
	}
	if rest := f &^ (FlagInitiator | FlagVersion | FlagResponse); rest != 0 {
		s += fmt.Sprintf("+0x%02x", uint8(rest))
	}
	if s == "" {
		return "-"
	}
	return s
}

var protocolNames = map[ProtocolID]string{
	ProtoIKE: "IKE", ProtoAH: "AH", ProtoESP: "ESP", ProtoGIKEUpdate: "GIKE_UPDATE",
}

func (p ProtocolID) String() string { return nameOf(protocolNames, p, "PROTO") }

var transformTypeNames = map[TransformType]string{
	TransformENCR: "ENCR", TransformPRF: "PRF", TransformINTEG: "INTEG", TransformKE: "KE",
	TransformSN: "SN", TransformADDKE1: "ADDKE1", TransformADDKE2: "ADDKE2", TransformADDKE3: "ADDKE3",
	TransformADDKE4: "ADDKE4", TransformADDKE5: "ADDKE5", TransformADDKE6: "ADDKE6", TransformADDKE7: "ADDKE7",
	TransformKWA: "KWA", TransformGCAUTH: "GCAUTH",
}

func (t TransformType) String() string { return nameOf(transformTypeNames, t, "TRANSFORM_TYPE") }

var transformIDNames = map[TransformType]map[uint16]string{
	TransformENCR: {
		EncrDES: "ENCR_DES", Encr3DES: "ENCR_3DES", EncrNULL: "ENCR_NULL", EncrAESCBC: "ENCR_AES_CBC",
		EncrAESCTR: "ENCR_AES_CTR", EncrAESCCM8: "ENCR_AES_CCM_8", EncrAESCCM12: "ENCR_AES_CCM_12",
		EncrAESCCM16: "ENCR_AES_CCM_16", EncrAESGCM8: "ENCR_AES_GCM_8", EncrAESGCM12: "ENCR_AES_GCM_12",
		EncrAESGCM16: "ENCR_AES_GCM_16", EncrNullAuthAESGMAC: "ENCR_NULL_AUTH_AES_GMAC",
		EncrChaCha20Poly1305: "ENCR_CHACHA20_POLY1305",
	},
	TransformPRF: {
		PRFHMACMD5: "PRF_HMAC_MD5", PRFHMACSHA1: "PRF_HMAC_SHA1", PRFAES128XCBC: "PRF_AES128_XCBC",
		PRFHMACSHA2256: "PRF_HMAC_SHA2_256", PRFHMACSHA2384: "PRF_HMAC_SHA2_384",
		PRFHMACSHA2512: "PRF_HMAC_SHA2_512", PRFAES128CMAC: "PRF_AES128_CMAC",
	},
	TransformINTEG: {
		IntegNone: "NONE", IntegHMACMD596: "AUTH_HMAC_MD5_96", IntegHMACSHA196: "AUTH_HMAC_SHA1_96",
		IntegAESXCBC96: "AUTH_AES_XCBC_96", IntegAESCMAC96: "AUTH_AES_CMAC_96",
		IntegAES128GMAC: "AUTH_AES_128_GMAC", IntegAES192GMAC: "AUTH_AES_192_GMAC",
		IntegAES256GMAC: "AUTH_AES_256_GMAC", IntegHMACSHA2256128: "AUTH_HMAC_SHA2_256_128",
		IntegHMACSHA2384192: "AUTH_HMAC_SHA2_384_192", IntegHMACSHA2512256: "AUTH_HMAC_SHA2_512_256",
	},
	TransformKE: {
		KENone: "NONE", KEMODP1024: "MODP_1024", KEMODP1536: "MODP_1536", KEMODP2048: "MODP_2048",
		KEMODP3072: "MODP_3072", KEMODP4096: "MODP_4096", KEMODP6144: "MODP_6144", KEMODP8192: "MODP_8192",
		KEECP256: "ECP_256", KEECP384: "ECP_384", KEECP521: "ECP_521", KECurve25519: "CURVE25519",
		KECurve448: "CURVE448", KEMLKEM512: "ML_KEM_512", KEMLKEM768: "ML_KEM_768", KEMLKEM1024: "ML_KEM_1024",
	},
	TransformSN: {SN32Bit: "32_BIT_SEQUENTIAL", SN64Bit: "PARTIAL_64_BIT_SEQUENTIAL", SN32BitUnspecified: "32_BIT_UNSPECIFIED"},
	TransformKWA: {
		KWA5649AES128: "KW_5649_128", KWA5649AES192: "KW_5649_192", KWA5649AES256: "KW_5649_256", KWAARX: "KW_ARX",
	},
	TransformGCAUTH: {GCAuthImplicit: "IMPLICIT", GCAuthDigitalSignature: "DIGITAL_SIGNATURE"},
}

// TransformIDName names a Transform ID within its transform type's registry.
func TransformIDName(t TransformType, id uint16) string {
	return nameOf(transformIDNames[t], id, t.String())
}

var idTypeNames = map[IDType]string{
	IDIPv4Addr: "ID_IPV4_ADDR", IDFQDN: "ID_FQDN", IDRFC822Addr: "ID_RFC822_ADDR",
	IDIPv6Addr: "ID_IPV6_ADDR", IDDERASN1DN: "ID_DER_ASN1_DN", IDDERASN1GN: "ID_DER_ASN1_GN",
	IDKeyID: "ID_KEY_ID", IDFCName: "ID_FC_NAME", IDNull: "ID_NULL",
}

func (t IDType) String() string { return nameOf(idTypeNames, t, "ID_TYPE") }

var certEncodingNames = map[CertEncoding]string{
	CertPKCS7: "PKCS7_WRAPPED_X509", CertPGP: "PGP", CertDNSSignedKey: "DNS_SIGNED_KEY",
	CertX509Sig: "X509_CERT_SIG", CertKerberos: "KERBEROS_TOKEN", CertCRL: "CRL", CertARL: "ARL",
	CertSPKI: "SPKI", CertX509Attr: "X509_CERT_ATTR", CertRawRSA: "RAW_RSA_KEY",
	CertHashURLX509: "HASH_URL_X509_CERT", CertHashURLBundle: "HASH_URL_X509_BUNDLE",
	CertOCSP: "OCSP_CONTENT", CertRawPublicKey: "RAW_PUBLIC_KEY",
}

func (e CertEncoding) String() string { return nameOf(certEncodingNames, e, "CERT_ENCODING") }

var authMethodNames = map[AuthMethod]string{
	AuthRSASig: "RSA_SIG", AuthPSK: "SHARED_KEY_MIC", AuthDSSSig: "DSS_SIG",
	AuthECDSA256: "ECDSA_SHA256_P256", AuthECDSA384: "ECDSA_SHA384_P384", AuthECDSA521: "ECDSA_SHA512_P521",
	AuthGSPAM: "GSPAM", AuthNull: "NULL", AuthDigitalSignature: "DIGITAL_SIGNATURE",
}

func (m AuthMethod) String() string { return nameOf(authMethodNames, m, "AUTH_METHOD") }

var tsTypeNames = map[TSType]string{
	TSIPv4AddrRange: "TS_IPV4_ADDR_RANGE", TSIPv6AddrRange: "TS_IPV6_ADDR_RANGE",
	TSFCAddrRange: "TS_FC_ADDR_RANGE", TSSecLabel: "TS_SECLABEL",
}

func (t TSType) String() string { return nameOf(tsTypeNames, t, "TS_TYPE") }
