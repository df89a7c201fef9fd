package ikev2

// NotifyType is a Notify Message Type (RFC 7296 §3.10.1; IANA "IKEv2 Notify
// Message Types - Error Types" (1-16383) and "- Status Types" (16384-)).
type NotifyType uint16

// Error types.
const (
	NotifyUnsupportedCriticalPayload NotifyType = 1
	NotifyInvalidIKESPI              NotifyType = 4
	NotifyInvalidMajorVersion        NotifyType = 5
	NotifyInvalidSyntax              NotifyType = 7
	NotifyInvalidMessageID           NotifyType = 9
	NotifyInvalidSPI                 NotifyType = 11
	NotifyNoProposalChosen           NotifyType = 14
	NotifyInvalidKEPayload           NotifyType = 17
	NotifyAuthenticationFailed       NotifyType = 24
	NotifySinglePairRequired         NotifyType = 34
	NotifyNoAdditionalSAs            NotifyType = 35
	NotifyInternalAddressFailure     NotifyType = 36
	NotifyFailedCPRequired           NotifyType = 37
	NotifyTSUnacceptable             NotifyType = 38
	NotifyInvalidSelectors           NotifyType = 39
	NotifyTemporaryFailure           NotifyType = 43 // RFC 7296 §2.25
	NotifyChildSANotFound            NotifyType = 44 // RFC 7296 §2.25
	// RFC 9838 §4.7 (Notify payload) errors; values IANA's, as libreswan's
	// include/ietf_constants.h has them (v2N_INVALID_GROUP_ID = 45,
	// v2N_AUTHORIZATION_FAILED = 46, v2N_REGISTRATION_FAILED = 49).
	NotifyInvalidGroupID      NotifyType = 45
	NotifyAuthorizationFailed NotifyType = 46
	NotifyStateNotFound       NotifyType = 47 // RFC 9370
	NotifyRegistrationFailed  NotifyType = 49
)

// Status types.
const (
	NotifyInitialContact              NotifyType = 16384
	NotifySetWindowSize               NotifyType = 16385
	NotifyAdditionalTSPossible        NotifyType = 16386
	NotifyIPCompSupported             NotifyType = 16387
	NotifyNATDetectionSourceIP        NotifyType = 16388
	NotifyNATDetectionDestinationIP   NotifyType = 16389
	NotifyCookie                      NotifyType = 16390
	NotifyUseTransportMode            NotifyType = 16391
	NotifyHTTPCertLookupSupported     NotifyType = 16392
	NotifyRekeySA                     NotifyType = 16393
	NotifyESPTFCPaddingNotSupported   NotifyType = 16394
	NotifyNonFirstFragmentsAlso       NotifyType = 16395
	NotifyMOBIKESupported             NotifyType = 16396 // RFC 4555
	NotifyMultipleAuthSupported       NotifyType = 16404 // RFC 4739
	NotifyAnotherAuthFollows          NotifyType = 16405 // RFC 4739
	NotifyRedirectSupported           NotifyType = 16406 // RFC 5685
	NotifyChildlessIKEv2Supported     NotifyType = 16418 // RFC 6023
	NotifyGroupSender                 NotifyType = 16429 // RFC 9838; libreswan's v2N_GROUP_SENDER
	NotifyIKEv2FragmentationSupported NotifyType = 16430 // RFC 7383
	NotifySignatureHashAlgorithms     NotifyType = 16431 // RFC 7427
	NotifyIntermediateExchangeSupport NotifyType = 16438 // RFC 9242
)

var notifyNames = map[NotifyType]string{
	NotifyUnsupportedCriticalPayload: "UNSUPPORTED_CRITICAL_PAYLOAD", NotifyInvalidIKESPI: "INVALID_IKE_SPI",
	NotifyInvalidMajorVersion: "INVALID_MAJOR_VERSION", NotifyInvalidSyntax: "INVALID_SYNTAX",
	NotifyInvalidMessageID: "INVALID_MESSAGE_ID", NotifyInvalidSPI: "INVALID_SPI",
	NotifyNoProposalChosen: "NO_PROPOSAL_CHOSEN", NotifyInvalidKEPayload: "INVALID_KE_PAYLOAD",
	NotifyAuthenticationFailed: "AUTHENTICATION_FAILED", NotifySinglePairRequired: "SINGLE_PAIR_REQUIRED",
	NotifyNoAdditionalSAs: "NO_ADDITIONAL_SAS", NotifyInternalAddressFailure: "INTERNAL_ADDRESS_FAILURE",
	NotifyFailedCPRequired: "FAILED_CP_REQUIRED", NotifyTSUnacceptable: "TS_UNACCEPTABLE",
	NotifyInvalidSelectors: "INVALID_SELECTORS", NotifyTemporaryFailure: "TEMPORARY_FAILURE",
	NotifyChildSANotFound: "CHILD_SA_NOT_FOUND", NotifyInvalidGroupID: "INVALID_GROUP_ID",
	NotifyAuthorizationFailed: "AUTHORIZATION_FAILED", NotifyStateNotFound: "STATE_NOT_FOUND",
	NotifyRegistrationFailed: "REGISTRATION_FAILED",
	NotifyInitialContact:     "INITIAL_CONTACT", NotifySetWindowSize: "SET_WINDOW_SIZE",
	NotifyAdditionalTSPossible: "ADDITIONAL_TS_POSSIBLE", NotifyIPCompSupported: "IPCOMP_SUPPORTED",
	NotifyNATDetectionSourceIP: "NAT_DETECTION_SOURCE_IP", NotifyNATDetectionDestinationIP: "NAT_DETECTION_DESTINATION_IP",
	NotifyCookie: "COOKIE", NotifyUseTransportMode: "USE_TRANSPORT_MODE",
	NotifyHTTPCertLookupSupported: "HTTP_CERT_LOOKUP_SUPPORTED", NotifyRekeySA: "REKEY_SA",
	NotifyESPTFCPaddingNotSupported: "ESP_TFC_PADDING_NOT_SUPPORTED", NotifyNonFirstFragmentsAlso: "NON_FIRST_FRAGMENTS_ALSO",
	NotifyMOBIKESupported: "MOBIKE_SUPPORTED", NotifyMultipleAuthSupported: "MULTIPLE_AUTH_SUPPORTED",
	NotifyAnotherAuthFollows: "ANOTHER_AUTH_FOLLOWS", NotifyRedirectSupported: "REDIRECT_SUPPORTED",
	NotifyChildlessIKEv2Supported: "CHILDLESS_IKEV2_SUPPORTED", NotifyGroupSender: "GROUP_SENDER",
	NotifyIKEv2FragmentationSupported: "IKEV2_FRAGMENTATION_SUPPORTED",
	NotifySignatureHashAlgorithms:     "SIGNATURE_HASH_ALGORITHMS",
	NotifyIntermediateExchangeSupport: "INTERMEDIATE_EXCHANGE_SUPPORTED",
}

func (t NotifyType) String() string { return nameOf(notifyNames, t, "NOTIFY") }

// IsError reports an error type (1-16383); the rest are status types.
func (t NotifyType) IsError() bool { return t != 0 && t < 16384 }

// Notify is the Notify payload (RFC 7296 §3.10, Figure 16):
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Next Payload  |C|  RESERVED   |         Payload Length        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Protocol ID  |   SPI Size    |      Notify Message Type      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                Security Parameter Index (SPI)                 ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                       Notification Data                       ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Protocol is 0 (and SPI empty) for notifications about the IKE SA.
type Notify struct {
	Protocol   ProtocolID
	NotifyType NotifyType
	SPI        []byte
	Data       []byte
}

func (*Notify) Type() PayloadType { return PayloadNotify }
func (p *Notify) BodyLen() int    { return 4 + len(p.SPI) + len(p.Data) }
func (p *Notify) AppendBody(b []byte) []byte {
	b = append(b, byte(p.Protocol), byte(len(p.SPI)))
	b = appendU16(b, uint16(p.NotifyType))
	return append(append(b, p.SPI...), p.Data...)
}

func parseNotify(b []byte) (*Notify, error) {
	r := newReader("Notify payload", b)
	p := &Notify{Protocol: ProtocolID(r.u8())}
	spiSize := int(r.u8())
	p.NotifyType = NotifyType(r.u16())
	p.SPI = r.bytes(spiSize)
	p.Data = r.rest()
	return p, r.done()
}
