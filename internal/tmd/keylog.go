package tmd

import (
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/isakmp"
)

// The key log (`groupvpn tmd -keylog FILE`, off by default) is to ESP what
// SSLKEYLOGFILE is to TLS: every TEK tmd installs is appended to it as one
// entry of Wireshark's ESP SA table, the "esp_sa" UAT file of Wireshark's
// ESP dissector (Edit > Preferences > Protocols > ESP > ESP SAs), so that
// Wireshark, tshark and scapy decrypt a capture of the group's traffic.
// Each entry is a comment line naming the group, the SPI and when tmd
// installed it, then the eight quoted, comma-separated fields of the table:
//
//	Protocol, Src IP, Dest IP, SPI, Encryption, Encryption Key,
//	Authentication, Authentication Key
//
// for example
//
//	# 2026-12-06T04:10:00Z group GETVPN spi 0x1a2b3c4d
//	"IPv4","*","*","0x1a2b3c4d","AES-GCM with 16 octet ICV [RFC4106]","0x<key|salt>","NULL",""
//
// Both addresses are the wildcard "*": a group SA protects traffic between
// any members' hosts, and its SPI alone names it. The algorithm fields are
// the names of Wireshark's value strings; the keys are hexadecimal with a
// 0x prefix, the AES-GCM key followed by its 4-octet salt (RFC 4106 §8.1,
// as Wireshark expects it: 160 or 288 bits). A TEK Wireshark's table
// cannot express (AH, AES-GMAC) is written as a comment line only.

// ESPSAFields are the eight fields of Wireshark's ESP SA table for t, and
// ok false when the table has no entry for t's transform (the reason in
// why).
func ESPSAFields(t sadb.TEK) (fields [8]string, ok bool, why string) {
	if t.Protocol != isakmp.TEKProtoESP {
		return fields, false, "not ESP"
	}
	hexKey := func(k []byte) string { return "0x" + hex.EncodeToString(k) }
	fields[0], fields[1], fields[2] = "IPv4", "*", "*"
	fields[3] = fmt.Sprintf("0x%08x", t.SPI)
	switch isakmp.ESPTransform(t.Transform) {
	case isakmp.ESPAESGCM16:
		fields[4], fields[5], fields[6] = "AES-GCM with 16 octet ICV [RFC4106]", hexKey(t.EncKey), "NULL"
		return fields, true, ""
	case isakmp.ESPAESGCM12:
		fields[4], fields[5], fields[6] = "AES-GCM with 12 octet ICV [RFC4106]", hexKey(t.EncKey), "NULL"
		return fields, true, ""
	case isakmp.ESPAESGCM8:
		fields[4], fields[5], fields[6] = "AES-GCM with 8 octet ICV [RFC4106]", hexKey(t.EncKey), "NULL"
		return fields, true, ""
	case isakmp.ESPAESCBC:
		fields[4], fields[5] = "AES-CBC [RFC3602]", hexKey(t.EncKey)
	case isakmp.ESPNull:
		fields[4], fields[5] = "NULL", ""
	default:
		return fields, false, fmt.Sprintf("ESP transform %d has no entry in Wireshark's ESP SA table", t.Transform)
	}
	switch t.AuthAlg {
	case isakmp.AuthAlgHMACSHA1:
		fields[6] = "HMAC-SHA-1-96 [RFC2404]"
	case isakmp.AuthAlgHMACSHA256:
		fields[6] = "HMAC-SHA-256-128 [RFC4868]"
	case isakmp.AuthAlgHMACSHA384:
		fields[6] = "HMAC-SHA-384-192 [RFC4868]"
	case isakmp.AuthAlgHMACSHA512:
		fields[6] = "HMAC-SHA-512-256 [RFC4868]"
	default:
		return fields, false, fmt.Sprintf("authentication algorithm %d has no entry in Wireshark's ESP SA table", t.AuthAlg)
	}
	fields[7] = hexKey(t.AuthKey)
	return fields, true, ""
}

// WriteKeyLog appends t to w as one key log entry (see above), installed
// at now.
func WriteKeyLog(w io.Writer, t sadb.TEK, now time.Time) error {
	var b strings.Builder
	// The group name comes from the KS's configuration through isakmpd;
	// quote it so that no byte of it can end the comment line.
	fmt.Fprintf(&b, "# %s group %q spi 0x%08x\n", now.UTC().Format(time.RFC3339), t.Group, t.SPI)
	f, ok, why := ESPSAFields(t)
	if !ok {
		fmt.Fprintf(&b, "# (no entry: %s)\n", why)
	} else {
		for i, v := range f {
			if i > 0 {
				b.WriteByte(',')
			}
			// Every field is one of the fixed strings above or hex: no
			// quote or backslash to escape.
			b.WriteString(`"` + v + `"`)
		}
		b.WriteByte('\n')
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("tmd: key log: %w", err)
	}
	return nil
}
