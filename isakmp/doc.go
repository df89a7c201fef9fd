// Package isakmp is the wire codec for ISAKMP (RFC 2408), the IKEv1 payloads
// of the IPsec DOI (RFC 2407, RFC 2409) and the Group Domain of
// Interpretation (GDOI, RFC 6407, with the GROUPKEY-PUSH acknowledgement of
// RFC 8263), and groupvpn's open COOP announcement between key servers
// (coop.go, members.go; docs/wire.md "COOP announcements").
//
// The package holds no state, reads no clock and does no I/O. Every payload
// has one file: a struct, its Type, BodyLen (the octets after the 4-octet
// generic payload header), AppendBody and a parse function. Messages are a
// Header followed by a chain of payloads linked by their Next Payload fields.
//
// When the header's Encryption flag is set, the octets after the header are
// the encrypted body: ParseMessage leaves them in Message.Body and the caller
// decrypts them and calls ParsePayloads with Header.NextPayload.
//
// Parsing treats every length and count on the wire as hostile: each read is
// bounds-checked, nothing is allocated from a length or count beyond the
// octets actually present, and every error says where parsing stopped.
// Parsed byte slices are copies: callers may reuse their receive buffers.
// Everything that parses re-marshals to the same octets.
package isakmp
