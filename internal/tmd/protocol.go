// Package tmd is the tunnel manager daemon (SPEC D1): the process that owns
// the group SA database (the TEKs and KEKs of RFC 6407 §5.3–§5.6, the
// groups' policies and fail modes) and the data plane it hands the TEKs
// and policies to (Backend, never the KEKs). The protocol daemons
// (isakmpd, ikev2d) install and delete SAs through a versioned API on a unix socket; lifetimes expire in tmd, so
// SAs are removed on time even while no protocol daemon runs, and they
// survive a protocol daemon's restart (DESIGN §1: a control-plane crash is
// not a traffic outage).
//
// # Wire protocol (API version 2)
//
// A unix SOCK_STREAM socket (default /run/groupvpn/tmd.sock, mode 0600)
// carrying JSON objects, one per line ('\n'-terminated). A line is at most
// MaxLine bytes; a longer or malformed line is answered with an error and
// counted, and the connection stays open.
//
// Limits (Options.Limits): at most 32 connections at once (one more is
// answered {"error":"tmd: too many connections (limit 32); try again
// later"} and closed); the hello must arrive within 10 s of the connect;
// an introduced connection silent for 5 minutes is closed (the IKE
// daemons' clients check tmd every 2 s and redial); a line, once begun,
// must end within 30 s; a response not read within 5 s closes the
// connection. Status counts them (refused, timed_out, write_failed).
//
// The client's first line is a hello:
//
//	{"hello":{"api":2,"client":"isakmpd","pid":123}}
//
// answered by
//
//	{"ok":true,"api":2,"server":"tmd","pid":4711}
//
// or, when the server does not speak the requested API version, by an error
// after which the server closes the connection:
//
//	{"error":"tmd speaks API version 2; the client asked for 1: upgrade tmd and the IKE daemons together"}
//
// Versions: a tmd speaks exactly one API version and refuses every other
// at the hello, since tmd and the IKE daemons are upgraded together.
// Version 2 added set-policy and the policies of list and status: an
// isakmpd of version 1 cannot hand tmd the group's policy, so a data plane
// fed by it would not know which traffic to encrypt; it is refused at
// once instead of running without one.
//
// Then each line is a request answered by exactly one response line, in
// order:
//
//	{"op":"install-tek","tek":{...sadb.TEK...}}         {"ok":true}
//	{"op":"delete-tek","group":"G","spi":305419896}     {"ok":true}
//	{"op":"install-kek","kek":{...sadb.KEK...}}         {"ok":true}
//	{"op":"delete-kek","group":"G"}                     {"ok":true}
//	{"op":"set-fail-mode","group":"G","mode":"fail-close"}  {"ok":true}
//	{"op":"fail-mode","group":"G"}                      {"ok":true,"mode":"fail-open"}
//	{"op":"set-policy","group":"G","policy":[{...sadb.PolicyEntry...},...]}  {"ok":true}
//	{"op":"list"}                                       {"ok":true,"teks":[...],"keks":[...],"fail_modes":{"G":"fail-close"},"policies":{"G":[...]}}
//	{"op":"status"}                                     {"ok":true,"status":{...Status...}}
//	{"op":"counters"}                                   {"ok":true,"sa_counters":[{"group":"G","spi":305419896,"encaps_packets":0,...}],"data_plane":{...}}
//
// counters answers each TEK's packet counters as the data plane
// (Backend.QuerySA) reports them, and, when tmd runs the forwarding
// engine (groupvpn tmd -tun), the engine's counters ("data_plane", also
// in status): what `show crypto ipsec sa` shows. A TEK the backend cannot
// report on is left out. The operation was added within API version 2:
// an older tmd answers it with an unknown-op error.
//
// set-policy replaces the group's whole ordered policy (the KS's match
// ACL, first matching entry wins); an empty or absent policy removes it.
// An entry is {"Action":"permit"|"deny","IPProto":0,"Src":"10.1.0.0/16",
// "Dst":"10.2.0.0/16","SrcPort":0,"DstPort":0,"SPI":305419896}: permit
// (encrypt with the TEK of SPI; SPI 0: covered, but no TEK yet, so the
// group's fail mode applies: the fail-close bootstrap policy a GM installs
// before its first registration, internal/gm.Bootstrap) or deny (pass in
// the clear, SPI 0), source and destination prefixes of one family, 0 for any
// protocol or port. A policy of more than MaxPolicyEntries (1024)
// entries, or an entry otherwise malformed, is refused as a malformed
// request (counted in status's malformed) and changes nothing. tmd hands
// the policy with the group's fail mode to its data plane (Backend); a
// set-fail-mode of a group with a policy re-installs it with the new mode.
// status counts the groups with a policy ("policies").
//
// A failed request is answered {"error":"reason"}. sadb.TEK and sadb.KEK
// travel as encoding/json renders them (field names as in Go; netip values
// as text, times as RFC 3339, byte slices as base64).
package tmd

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/groupvpn/groupvpn/internal/sadb"
)

// APIVersion is the version of the wire protocol this package speaks.
// Version 2 added set-policy, and the policies in list and status.
const APIVersion = 2

// MaxPolicyEntries bounds the entries of one group's policy.
const MaxPolicyEntries = 1024

// MaxLine bounds one protocol line, newline excluded.
const MaxLine = 1 << 20

// Operations of API version 2.
const (
	OpInstallTEK  = "install-tek"
	OpDeleteTEK   = "delete-tek"
	OpInstallKEK  = "install-kek"
	OpDeleteKEK   = "delete-kek"
	OpSetFailMode = "set-fail-mode"
	OpFailMode    = "fail-mode"
	OpSetPolicy   = "set-policy"
	OpList        = "list"
	OpStatus      = "status"
	OpCounters    = "counters"
)

// Hello opens a connection: the API version the client speaks and who it is.
type Hello struct {
	API    int    `json:"api"`
	Client string `json:"client"`
	PID    int    `json:"pid"`
}

// Request is one client line: a hello, or an operation and its arguments.
type Request struct {
	Hello *Hello    `json:"hello,omitempty"`
	Op    string    `json:"op,omitempty"`
	TEK   *sadb.TEK `json:"tek,omitempty"`
	KEK   *sadb.KEK `json:"kek,omitempty"`
	Group string    `json:"group,omitempty"`
	SPI   uint32    `json:"spi,omitempty"`
	Mode  string    `json:"mode,omitempty"` // "fail-open" or "fail-close"
	// Policy is set-policy's ordered policy; none removes the group's.
	Policy []sadb.PolicyEntry `json:"policy,omitempty"`
}

// Response is one server line.
type Response struct {
	OK    bool   `json:"ok,omitempty"`
	Error string `json:"error,omitempty"`
	// Answer to a hello.
	API    int    `json:"api,omitempty"`
	Server string `json:"server,omitempty"`
	PID    int    `json:"pid,omitempty"`
	// Answer to list.
	TEKs      []sadb.TEK        `json:"teks,omitempty"`
	KEKs      []sadb.KEK        `json:"keks,omitempty"`
	FailModes map[string]string `json:"fail_modes,omitempty"`
	// Policies are the groups' ordered policies.
	Policies map[string][]sadb.PolicyEntry `json:"policies,omitempty"`
	// Answer to fail-mode.
	Mode string `json:"mode,omitempty"`
	// Answer to status.
	Status *Status `json:"status,omitempty"`
	// Answer to counters.
	SACounters []TEKCounters      `json:"sa_counters,omitempty"`
	DataPlane  *DataPlaneCounters `json:"data_plane,omitempty"`
}

// TEKCounters are one TEK's packet counters (Backend.QuerySA).
type TEKCounters struct {
	Group string `json:"group"`
	SPI   uint32 `json:"spi"`
	SACounters
}

// DataPlaneCounters are the forwarding engine's counters, when tmd runs
// one (groupvpn tmd -tun).
type DataPlaneCounters struct {
	// Device is the TUN device the engine forwards through.
	Device   string    `json:"device"`
	Counters []Counter `json:"counters"`
}

// Counter is one named engine counter (snake_case name, stable).
type Counter struct {
	Name  string `json:"name"`
	Help  string `json:"help"`
	Value uint64 `json:"value"`
}

// Status is what tmd reports about itself (lssrc -l, show commands).
type Status struct {
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	API     int       `json:"api"`
	TEKs    int       `json:"teks"`
	KEKs    int       `json:"keks"`
	// Policies is the number of groups with a policy installed.
	Policies int `json:"policies"`
	// Malformed counts the request lines refused as malformed since start.
	Malformed uint64 `json:"malformed"`
	// Refused counts connections refused over the connection limit,
	// TimedOut those closed by a hello, idle or line timeout, and
	// WriteFailed those closed because a response could not be written
	// (a client that does not read) since start.
	Refused     uint64       `json:"refused"`
	TimedOut    uint64       `json:"timed_out"`
	WriteFailed uint64       `json:"write_failed"`
	Clients     []ClientInfo `json:"clients"`
	// DataPlane are the forwarding engine's counters when tmd runs one.
	DataPlane *DataPlaneCounters `json:"data_plane,omitempty"`
}

// ClientInfo is one connected client as its hello named it.
type ClientInfo struct {
	Name  string    `json:"name"`
	PID   int       `json:"pid"`
	Since time.Time `json:"since"`
}

// versionError is the refusal of a hello asking for another API version.
func versionError(asked int) string {
	return fmt.Sprintf("tmd speaks API version %d; the client asked for %d: upgrade tmd and the IKE daemons together", APIVersion, asked)
}

// ParseFailMode parses the wire name of a fail mode (sadb.FailMode.String).
func ParseFailMode(s string) (sadb.FailMode, error) {
	switch s {
	case "fail-open":
		return sadb.FailOpen, nil
	case "fail-close":
		return sadb.FailClose, nil
	}
	return 0, fmt.Errorf("unknown fail mode %q (want fail-open or fail-close)", s)
}

// errLineTooLong reports a line over MaxLine; the rest of it was skipped.
var errLineTooLong = fmt.Errorf("line longer than %d bytes", MaxLine)

// readLine returns the next line without its newline. A line longer than
// MaxLine is consumed up to its newline and reported as errLineTooLong so
// that the connection can go on with the next line. At end of input a
// final unterminated line is returned; then io.EOF.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	tooLong := false
	for {
		frag, err := r.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(frag) > MaxLine+1 { // +1: the newline
				tooLong, line = true, nil
			} else {
				line = append(line, frag...)
			}
		}
		switch {
		case err == nil:
			if tooLong {
				return nil, errLineTooLong
			}
			return bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'}), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0 && !tooLong:
			return line, nil
		default:
			return nil, err
		}
	}
}

// encodeLine renders v as one protocol line.
func encodeLine(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
