// Package gikev2 is the G-IKEv2 group key management of RFC 9838, sans-IO:
// what a GCKS (key server) puts in the GSA and KD payloads of GSA_AUTH,
// GSA_REGISTRATION and GSA_INBAND_REKEY, the GSA_REKEY messages it sends
// over the multicast or unicast Rekey SA (built once, signed per RFC 7427,
// encrypted, retransmitted bitwise identical), and what a group member does
// with all of them: verify, decrypt, check the Message ID against replay,
// unwrap the keys (RFC 5649, internal/keywrap) and hand out the TEKs as
// sadb.TEK values, the same the GDOI member installs.
//
// The IKE SA that carries GSA_AUTH and GSA_REGISTRATION is internal/ikev2's
// (Config.AuthExchange = GSA_AUTH, Config.AuthRequest, Config.OnAuth,
// SA.Request/Respond): this package gives it payload chains and takes
// payload chains back. It reads no clock, touches no socket and starts no
// goroutine; randomness comes from an injected io.Reader.
//
// Key server values come from internal/ks (FromKS maps a ks.GroupState):
// the group's TEKs and KEK keep a single owner, so GDOI and G-IKEv2 members
// of one group share the same data-security SAs (docs/gikev2.md).
package gikev2
