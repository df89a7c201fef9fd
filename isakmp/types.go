package isakmp

import "fmt"

// Version is the ISAKMP version octet used by IKEv1 and GDOI: major 1,
// minor 0 (RFC 2408 §3.1).
const Version = 0x10

// PayloadType is an ISAKMP Next Payload value (RFC 2408 §3.1, RFC 6407 §5,
// RFC 3947 for NAT-D/NAT-OA).
type PayloadType uint8

const (
	PayloadNone         PayloadType = 0
	PayloadSA           PayloadType = 1
	PayloadProposal     PayloadType = 2
	PayloadTransform    PayloadType = 3
	PayloadKE           PayloadType = 4
	PayloadID           PayloadType = 5
	PayloadCert         PayloadType = 6
	PayloadCR           PayloadType = 7
	PayloadHash         PayloadType = 8
	PayloadSig          PayloadType = 9
	PayloadNonce        PayloadType = 10
	PayloadNotification PayloadType = 11
	PayloadDelete       PayloadType = 12
	PayloadVendorID     PayloadType = 13
	PayloadSAK          PayloadType = 15 // SA KEK, RFC 6407 §5.3
	PayloadSAT          PayloadType = 16 // SA TEK, RFC 6407 §5.4
	PayloadKD           PayloadType = 17 // Key Download, RFC 6407 §5.5
	PayloadSEQ          PayloadType = 18 // Sequence Number, RFC 6407 §5.6
	PayloadNATD         PayloadType = 20 // RFC 3947
	PayloadNATOA        PayloadType = 21 // RFC 3947
	PayloadGAP          PayloadType = 22 // Group Associated Policy, RFC 6407 §5.4.3
)

var payloadTypeNames = map[PayloadType]string{
	PayloadNone: "NONE", PayloadSA: "SA", PayloadProposal: "P", PayloadTransform: "T",
	PayloadKE: "KE", PayloadID: "ID", PayloadCert: "CERT", PayloadCR: "CR",
	PayloadHash: "HASH", PayloadSig: "SIG", PayloadNonce: "NONCE", PayloadNotification: "N",
	PayloadDelete: "D", PayloadVendorID: "VID", PayloadSAK: "SAK", PayloadSAT: "SAT",
	PayloadKD: "KD", PayloadSEQ: "SEQ", PayloadNATD: "NAT-D", PayloadNATOA: "NAT-OA",
	PayloadGAP: "GAP", PayloadCOOP: "COOP", PayloadMembers: "MEMBERS",
}

func (t PayloadType) String() string { return nameOf(payloadTypeNames, t, "PAYLOAD") }

// ExchangeType is the header's Exchange Type (RFC 2408 §3.1). Values 32–239
// are DOI specific: in the IPsec DOI 32 is Quick Mode (RFC 2409 §5.5); in the
// GDOI 32 is GROUPKEY-PULL and 33 GROUPKEY-PUSH (RFC 6407 §3, §4).
type ExchangeType uint8

const (
	ExchangeNone          ExchangeType = 0
	ExchangeBase          ExchangeType = 1
	ExchangeIdentityProt  ExchangeType = 2 // Main Mode
	ExchangeAuthOnly      ExchangeType = 3
	ExchangeAggressive    ExchangeType = 4
	ExchangeInformational ExchangeType = 5
	ExchangeQuickMode     ExchangeType = 32 // IPsec DOI
	ExchangeNewGroupMode  ExchangeType = 33 // IPsec DOI
	ExchangePull          ExchangeType = 32 // GDOI GROUPKEY-PULL, RFC 6407 §3
	ExchangePush          ExchangeType = 33 // GDOI GROUPKEY-PUSH, RFC 6407 §4
	ExchangePushAck       ExchangeType = 35 // GDOI GROUPKEY-PUSH ACK, RFC 8263 §3
)

var exchangeNames = map[ExchangeType]string{
	ExchangeNone: "NONE", ExchangeBase: "BASE", ExchangeIdentityProt: "IDENTITY_PROTECTION",
	ExchangeAuthOnly: "AUTH_ONLY", ExchangeAggressive: "AGGRESSIVE",
	ExchangeInformational: "INFORMATIONAL",
	ExchangePull:          "GROUPKEY-PULL/QUICK_MODE",
	ExchangePush:          "GROUPKEY-PUSH/NEW_GROUP_MODE",
	ExchangePushAck:       "GROUPKEY-PUSH-ACK",
	ExchangeCOOPAnn:       "COOP-ANN",
}

func (e ExchangeType) String() string { return nameOf(exchangeNames, e, "EXCHANGE") }

// Flags is the header Flags octet (RFC 2408 §3.1).
type Flags uint8

const (
	FlagEncryption Flags = 0x01 // E: payloads after the header are encrypted
	FlagCommit     Flags = 0x02 // C
	FlagAuthOnly   Flags = 0x04 // A
)

func (f Flags) String() string {
	s := ""
	for _, x := range []struct {
		f Flags
		n string
	}{{FlagEncryption, "E"}, {FlagCommit, "C"}, {FlagAuthOnly, "A"}} {
		if f&x.f != 0 {
			s += x.n
		}
	}
	if rest := f &^ (FlagEncryption | FlagCommit | FlagAuthOnly); rest != 0 {
		s += fmt.Sprintf("+0x%02x", uint8(rest))
	}
	if s == "" {
		return "-"
	}
	return s
}

// DOI is a Domain of Interpretation (RFC 2408 §2.1).
type DOI uint32

const (
	DOIISAKMP DOI = 0 // generic ISAKMP (phase 1 Notify/Delete)
	DOIIPsec  DOI = 1 // RFC 2407
	DOIGDOI   DOI = 2 // RFC 6407 §5.2
)

var doiNames = map[DOI]string{DOIISAKMP: "ISAKMP", DOIIPsec: "IPSEC", DOIGDOI: "GDOI"}

func (d DOI) String() string { return nameOf(doiNames, d, "DOI") }

// SituationIdentityOnly is the IPsec DOI situation SIT_IDENTITY_ONLY
// (RFC 2407 §4.2). GDOI SA payloads carry situation 0 (RFC 6407 §5.2).
const SituationIdentityOnly uint32 = 1

// ProtocolID names a security protocol in Proposal, Notify and Delete
// payloads (RFC 2407 §4.4.1). In the GDOI, protocol 0 in a Delete payload
// names the KEK (RFC 6407 §5.8 / §4.2.1).
type ProtocolID uint8

const (
	ProtoGDOIKEK  ProtocolID = 0
	ProtoISAKMP   ProtocolID = 1
	ProtoIPsecAH  ProtocolID = 2
	ProtoIPsecESP ProtocolID = 3
	ProtoIPComp   ProtocolID = 4
)

var protocolNames = map[ProtocolID]string{
	ProtoGDOIKEK: "KEK", ProtoISAKMP: "PROTO_ISAKMP", ProtoIPsecAH: "PROTO_IPSEC_AH",
	ProtoIPsecESP: "PROTO_IPSEC_ESP", ProtoIPComp: "PROTO_IPCOMP",
}

func (p ProtocolID) String() string { return nameOf(protocolNames, p, "PROTO") }
