package ikev2

// IDg is the Group Identification payload of G-IKEv2 (RFC 9838 §4.2): "The
// payload is constructed by using the IKEv2 Identification Payload (section
// 3.5 of [RFC7296])", with Payload Type 50. "ID type ID_KEY_ID MUST be
// supported. ID types ID_IPV4_ADDR, ID_FQDN, ID_RFC822_ADDR, ID_IPV6_ADDR
// SHOULD be supported." It is an *ID whose Which is PayloadIDg:
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Next Payload  |C|  RESERVED   |         Payload Length        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   ID Type     |                 RESERVED                      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                   Identification Data                         ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
func IDg(t IDType, data []byte) *ID { return &ID{Which: PayloadIDg, IDType: t, Data: data} }

// GroupKeyID returns the IDg of a group named by a number, as GDOI groups
// are (ID_KEY_ID with the number as 4 big-endian octets, like isakmp's
// GroupID): groupvpn's choice, so a group keeps one identity under both
// protocols (docs/wire.md "G-IKEv2").
func GroupKeyID(n uint32) *ID { return IDg(IDKeyID, appendU32(nil, n)) }
