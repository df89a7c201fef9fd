package testnet

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// IKEv1 key-derivation labels as charon 5.9.8 logs them (subsystem IKE,
// level 4 for the keys, 3 for the hashes; libcharon's keymat_v1.c and the
// IV manager), in the order an initiator logs them during Main Mode:
//
//	shared Diffie Hellman secret   g^xy (for ECP groups the x coordinate only)
//	SKEYID                         prf(psk, Ni_b|Nr_b), or prf(Ni_b|Nr_b, g^xy) with signatures
//	SKEYID_d                       prf(SKEYID, g^xy|CKY-I|CKY-R|0)
//	SKEYID_a                       prf(SKEYID, SKEYID_d|g^xy|CKY-I|CKY-R|1)
//	SKEYID_e                       prf(SKEYID, SKEYID_a|g^xy|CKY-I|CKY-R|2)
//	encryption key Ka              SKEYID_e cut (or expanded) to the cipher's key size
//	initial IV                     hash(g^xi|g^xr) cut to the cipher's block size
//	HASH_I data                    g^xi|g^xr|CKY-I|CKY-R|SAi_b|IDii_b
//	HASH_I                         prf(SKEYID, HASH_I data)
//	next IV for MID 0              IV after each encrypted phase 1 message (logged repeatedly)
//	HASH_R data                    g^xr|g^xi|CKY-R|CKY-I|SAi_b|IDir_b
//	HASH_R                         prf(SKEYID, HASH_R data)
//
// With ECDSA signatures, HASH_I and HASH_R use the HMAC of the ECDSA
// method's hash instead of the negotiated PRF (RFC 4754): with
// aes256-sha384-ecp384 and P-256 certificates they are HMAC-SHA-256 (32
// bytes) keyed with the 48-byte SKEYID. With PSK and RSA they use the PRF.
//
// A responder logs the same labels (HASH_I when it verifies it, HASH_R when
// it builds it). Quick Mode later adds "next IV for MID <n>" and the
// KEYMAT seeds "initiator SA seed" / "responder SA seed".
//
// Each value is a multi-line hex dump: a header line "<label> => <n> bytes
// @ <address>" and then one line per 16 bytes, "<offset>: <hex bytes>
// <ascii>", every line behind the filelog prefix (time, thread, [IKE] and,
// with ike_name, "<conn|unique-id>"). A sample from an initiator:
//
//	20:40:59 07[IKE] <psk|1> SKEYID => 32 bytes @ 0x7f2578001ce0
//	20:40:59 07[IKE] <psk|1>    0: 7B D4 27 C3 B1 13 78 F0 BC BC 76 B0 7D F4 42 B7  {.'...x...v.}.B.
//	20:40:59 07[IKE] <psk|1>   16: 1E 80 B7 D7 CD EB 94 DD 96 51 9E 5E A0 EF 3C 42  .........Q.^..<B
//	20:40:59 07[IKE] <psk|1> encryption key Ka => 16 bytes @ 0x7f2578001c70
//	20:40:59 07[IKE] <psk|1>    0: 20 53 A2 72 E1 AF 0E E2 5F 6E 8C EF 71 E0 CB 4D   S.r...._n..q..M
var IKEv1KeymatLabels = []string{
	"shared Diffie Hellman secret",
	"SKEYID",
	"SKEYID_d",
	"SKEYID_a",
	"SKEYID_e",
	"encryption key Ka",
	"initial IV",
	"HASH_I data",
	"HASH_I",
	"HASH_R data",
	"HASH_R",
	"initiator SA seed",
	"responder SA seed",
}

// isIKEv1KeymatLabel reports whether label is one of IKEv1KeymatLabels or
// "next IV for MID <n>".
func isIKEv1KeymatLabel(label string) bool {
	for _, l := range IKEv1KeymatLabels {
		if label == l {
			return true
		}
	}
	return strings.HasPrefix(label, "next IV for MID ")
}

// HexDump is one value charon logged with its %B format.
type HexDump struct {
	Line  int    // 1-based line number of the header line
	IKE   string // "<conn|unique-id>" tag, if the log has ike_name = yes
	Label string // text before " => "
	Data  []byte
}

var (
	// "… 07[IKE] <psk|1> SKEYID => 32 bytes @ 0x7f2578001ce0"
	dumpHeader = regexp.MustCompile(`\d+\[([A-Z]{3})\] (<[^>]*> )?(.+) => (\d+) bytes @ (?:0x[0-9a-fA-F]+|\(nil\))$`)
	// "… 07[IKE] <psk|1>   16: 1E 80 B7 …"
	dumpLine = regexp.MustCompile(`\d+\[([A-Z]{3})\] (?:<[^>]*> )? *(\d+): ([0-9A-F]{2}(?: [0-9A-F]{2})*)`)
)

// ParseHexDumps returns every hex dump in a charon log, in order. It fails
// on a dump whose lines are missing or do not add up to its announced size.
func ParseHexDumps(log string) ([]HexDump, error) {
	lines := strings.Split(log, "\n")
	var dumps []HexDump
	for i := 0; i < len(lines); i++ {
		m := dumpHeader.FindStringSubmatch(strings.TrimRight(lines[i], "\r"))
		if m == nil {
			continue
		}
		n, err := strconv.Atoi(m[4])
		if err != nil {
			return nil, fmt.Errorf("line %d: bad size %q", i+1, m[4])
		}
		d := HexDump{Line: i + 1, IKE: strings.TrimSpace(m[2]), Label: m[3], Data: make([]byte, 0, n)}
		for len(d.Data) < n {
			i++
			if i >= len(lines) {
				return nil, fmt.Errorf("line %d: %q: log ends after %d of %d bytes", d.Line, d.Label, len(d.Data), n)
			}
			dl := dumpLine.FindStringSubmatch(lines[i])
			if dl == nil {
				return nil, fmt.Errorf("line %d: %q: expected a hex dump line after %d of %d bytes, got %q",
					i+1, d.Label, len(d.Data), n, lines[i])
			}
			if off, _ := strconv.Atoi(dl[2]); off != len(d.Data) {
				return nil, fmt.Errorf("line %d: %q: dump line at offset %d, want %d", i+1, d.Label, off, len(d.Data))
			}
			want := min(16, n-len(d.Data))
			hex := strings.Fields(dl[3])
			if len(hex) < want {
				return nil, fmt.Errorf("line %d: %q: %d bytes on a dump line, want %d", i+1, d.Label, len(hex), want)
			}
			// The ASCII column may itself look like hex; only the
			// announced count of bytes is read.
			for _, h := range hex[:want] {
				b, err := strconv.ParseUint(h, 16, 8)
				if err != nil {
					return nil, fmt.Errorf("line %d: %q: bad hex byte %q", i+1, d.Label, h)
				}
				d.Data = append(d.Data, byte(b))
			}
		}
		dumps = append(dumps, d)
	}
	return dumps, nil
}

// ParseIKEv1Keymat extracts the IKEv1 key-derivation values (see
// IKEv1KeymatLabels, plus every "next IV for MID <n>") from a charon log
// written with ike at level 4, keyed by label. A label seen again (a second
// IKE SA, a rekeying, or the repeated "next IV for MID 0") is stored as
// "<label>#2", "<label>#3", … in log order, so the first Main Mode of the
// log has the plain labels. It fails if a dump is malformed or if the log
// has no key-derivation values at all.
func ParseIKEv1Keymat(log string) (map[string][]byte, error) {
	dumps, err := ParseHexDumps(log)
	if err != nil {
		return nil, err
	}
	km := make(map[string][]byte)
	for _, d := range dumps {
		if !isIKEv1KeymatLabel(d.Label) {
			continue
		}
		key := d.Label
		for n := 2; ; n++ {
			if _, dup := km[key]; !dup {
				break
			}
			key = fmt.Sprintf("%s#%d", d.Label, n)
		}
		km[key] = d.Data
	}
	if len(km) == 0 {
		return nil, fmt.Errorf("no IKEv1 key derivation in the log (is charon's ike subsystem logged at level 4?)")
	}
	return km, nil
}
