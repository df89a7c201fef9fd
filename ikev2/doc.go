// Package ikev2 is the wire codec for IKEv2 (RFC 7296) and its group key
// management extension G-IKEv2 (RFC 9838): the header, the generic payload
// header with its critical bit, the RFC 7296 payloads, the Encrypted payload
// (SK, RFC 7296 §3.14) and its fragments (SKF, RFC 7383), and the RFC 9838
// payloads IDg, GSA and KD with their policies, key bags and wrapped keys.
//
// It follows the house style of package isakmp: the package holds no state,
// reads no clock and does no I/O; every payload has one file with its RFC
// figure in the doc comment, a struct, Type, BodyLen (the octets after the
// 4-octet generic payload header), AppendBody and a parse function; parsers
// read through a sticky-error reader and every error is a *ParseError that
// wraps ErrShort or ErrMalformed and says where parsing stopped.
//
// A message is a Header followed by a chain of payloads linked by their Next
// Payload fields. When the chain reaches an Encrypted payload (SK) or an
// Encrypted Fragment payload (SKF), that payload is the last one (RFC 7296
// §3.14, RFC 7383 §2.5) and its Next Payload field names the first inner
// payload, kept in Encrypted.Inner / EncryptedFragment.Inner. The codec does
// not decrypt: the SA layer opens Encrypted.Data (IV, ciphertext, padding,
// ICV) and parses the plaintext chain with ParseInner. EncryptedDataOffset
// gives the position of the IV in a marshalled message (the end of the
// associated data of RFC 5282 §5.1 and RFC 7383 §2.5).
//
// Every length and count on the wire is hostile: a message is at most
// MaxMessageLen octets, a chain at most MaxPayloads payloads, and the
// substructures have their own bounds (MaxProposals, MaxTransforms,
// MaxAttributes, MaxKeyBags, ...). Nothing is allocated from a length or a
// count beyond the octets actually present. Parsed byte slices are copies:
// callers may reuse their receive buffers.
//
// RESERVED fields and the RESERVED bits of the generic payload header are
// sent as zero and ignored on receipt (RFC 7296 §3: "MUST be sent as zero
// and MUST be ignored on receipt"), so a message with such bits set parses
// and re-marshals to its canonical form (the bits cleared); everything else
// re-marshals to the same octets. The critical bit of a payload this package
// does not decode is kept (RawPayload.Critical): UnsupportedCritical finds
// the one the SA layer must answer with UNSUPPORTED_CRITICAL_PAYLOAD.
//
// A parse failure is a syntax error: the notification an IKE SA sends back
// for it is INVALID_SYNTAX (RFC 7296 §3.10.1), except ErrVersion, which is
// INVALID_MAJOR_VERSION.
package ikev2
