package isakmp

// NotifyType is a Notify Message Type. 1–16383 are errors, 16384–24575
// status types (RFC 2408 §3.14.1); 24576–32767 are IPsec DOI types
// (RFC 2407 §4.6.3); R-U-THERE and its ACK come from RFC 3706 §5.
type NotifyType uint16

const (
	NotifyInvalidPayloadType      NotifyType = 1
	NotifyDOINotSupported         NotifyType = 2
	NotifySituationNotSupported   NotifyType = 3
	NotifyInvalidCookie           NotifyType = 4
	NotifyInvalidMajorVersion     NotifyType = 5
	NotifyInvalidMinorVersion     NotifyType = 6
	NotifyInvalidExchangeType     NotifyType = 7
	NotifyInvalidFlags            NotifyType = 8
	NotifyInvalidMessageID        NotifyType = 9
	NotifyInvalidProtocolID       NotifyType = 10
	NotifyInvalidSPI              NotifyType = 11
	NotifyInvalidTransformID      NotifyType = 12
	NotifyAttributesNotSupported  NotifyType = 13
	NotifyNoProposalChosen        NotifyType = 14
	NotifyBadProposalSyntax       NotifyType = 15
	NotifyPayloadMalformed        NotifyType = 16
	NotifyInvalidKeyInformation   NotifyType = 17
	NotifyInvalidIDInformation    NotifyType = 18
	NotifyInvalidCertEncoding     NotifyType = 19
	NotifyInvalidCertificate      NotifyType = 20
	NotifyCertTypeUnsupported     NotifyType = 21
	NotifyInvalidCertAuthority    NotifyType = 22
	NotifyInvalidHashInformation  NotifyType = 23
	NotifyAuthenticationFailed    NotifyType = 24
	NotifyInvalidSignature        NotifyType = 25
	NotifyAddressNotification     NotifyType = 26
	NotifySALifetime              NotifyType = 27
	NotifyCertificateUnavailable  NotifyType = 28
	NotifyUnsupportedExchangeType NotifyType = 29
	NotifyUnequalPayloadLengths   NotifyType = 30
	NotifyConnected               NotifyType = 16384
	NotifyResponderLifetime       NotifyType = 24576
	NotifyReplayStatus            NotifyType = 24577
	NotifyInitialContact          NotifyType = 24578
	NotifyRUThere                 NotifyType = 36136
	NotifyRUThereAck              NotifyType = 36137

	// groupvpn's GM-removal and policy-replace signals, status types of
	// the private-use range 32768-40959 (RFC 2408 §3.14.1), carried in a
	// GROUPKEY-PUSH (docs/wire.md). Data: one octet, the mode.
	NotifyGMRemoval     NotifyType = 32801 // 1: shorten TEKs and re-register (temporary SAs), 2: now
	NotifyPolicyReplace NotifyType = 32802 // 1: shorten the old SAs, 2: replace now
)

// Modes of NotifyGMRemoval and NotifyPolicyReplace.
const (
	ModeShorten byte = 1
	ModeNow     byte = 2
)

var notifyNames = map[NotifyType]string{
	NotifyInvalidPayloadType: "INVALID-PAYLOAD-TYPE", NotifyDOINotSupported: "DOI-NOT-SUPPORTED",
	NotifySituationNotSupported: "SITUATION-NOT-SUPPORTED", NotifyInvalidCookie: "INVALID-COOKIE",
	NotifyInvalidMajorVersion: "INVALID-MAJOR-VERSION", NotifyInvalidMinorVersion: "INVALID-MINOR-VERSION",
	NotifyInvalidExchangeType: "INVALID-EXCHANGE-TYPE", NotifyInvalidFlags: "INVALID-FLAGS",
	NotifyInvalidMessageID: "INVALID-MESSAGE-ID", NotifyInvalidProtocolID: "INVALID-PROTOCOL-ID",
	NotifyInvalidSPI: "INVALID-SPI", NotifyInvalidTransformID: "INVALID-TRANSFORM-ID",
	NotifyAttributesNotSupported: "ATTRIBUTES-NOT-SUPPORTED", NotifyNoProposalChosen: "NO-PROPOSAL-CHOSEN",
	NotifyBadProposalSyntax: "BAD-PROPOSAL-SYNTAX", NotifyPayloadMalformed: "PAYLOAD-MALFORMED",
	NotifyInvalidKeyInformation: "INVALID-KEY-INFORMATION", NotifyInvalidIDInformation: "INVALID-ID-INFORMATION",
	NotifyInvalidCertEncoding: "INVALID-CERT-ENCODING", NotifyInvalidCertificate: "INVALID-CERTIFICATE",
	NotifyCertTypeUnsupported: "CERT-TYPE-UNSUPPORTED", NotifyInvalidCertAuthority: "INVALID-CERT-AUTHORITY",
	NotifyInvalidHashInformation: "INVALID-HASH-INFORMATION", NotifyAuthenticationFailed: "AUTHENTICATION-FAILED",
	NotifyInvalidSignature: "INVALID-SIGNATURE", NotifyAddressNotification: "ADDRESS-NOTIFICATION",
	NotifySALifetime: "NOTIFY-SA-LIFETIME", NotifyCertificateUnavailable: "CERTIFICATE-UNAVAILABLE",
	NotifyUnsupportedExchangeType: "UNSUPPORTED-EXCHANGE-TYPE", NotifyUnequalPayloadLengths: "UNEQUAL-PAYLOAD-LENGTHS",
	NotifyConnected: "CONNECTED", NotifyResponderLifetime: "RESPONDER-LIFETIME",
	NotifyReplayStatus: "REPLAY-STATUS", NotifyInitialContact: "INITIAL-CONTACT",
	NotifyRUThere: "R-U-THERE", NotifyRUThereAck: "R-U-THERE-ACK",
	NotifyGMRemoval: "GROUPVPN-GM-REMOVAL", NotifyPolicyReplace: "GROUPVPN-POLICY-REPLACE",
}

func (t NotifyType) String() string { return nameOf(notifyNames, t, "NOTIFY") }

// IsError reports whether t is in the error range 1–16383 (RFC 2408 §3.14.1).
func (t NotifyType) IsError() bool { return t >= 1 && t < 16384 }

// Notify is the Notification payload (RFC 2408 §3.14):
//
//	! Next Payload  !   RESERVED    !         Payload Length        !
//	!              Domain of Interpretation  (DOI)                  !
//	!  Protocol-ID  !   SPI Size    !      Notify Message Type      !
//	~                Security Parameter Index (SPI)                 ~
//	~                       Notification Data                       ~
//
// For phase-1 notifications the SPI is the two cookies (16 octets).
type Notify struct {
	DOI        DOI
	Protocol   ProtocolID
	NotifyType NotifyType
	SPI        []byte // SPI Size is len(SPI)
	Data       []byte
}

func (*Notify) Type() PayloadType { return PayloadNotification }
func (p *Notify) BodyLen() int    { return 8 + len(p.SPI) + len(p.Data) }

func (p *Notify) AppendBody(b []byte) []byte {
	b = appendU32(b, uint32(p.DOI))
	b = append(b, byte(p.Protocol), byte(len(p.SPI)))
	b = appendU16(b, uint16(p.NotifyType))
	return append(append(b, p.SPI...), p.Data...)
}

func parseNotify(b []byte) (*Notify, error) {
	r := newReader("Notification payload", b)
	p := &Notify{DOI: DOI(r.u32()), Protocol: ProtocolID(r.u8())}
	spiSize := int(r.u8())
	p.NotifyType = NotifyType(r.u16())
	p.SPI = r.bytes(spiSize)
	p.Data = r.rest()
	return p, r.done()
}
