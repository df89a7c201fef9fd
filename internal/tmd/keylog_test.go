package tmd

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/esp"
	"github.com/groupvpn/groupvpn/internal/pcap"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/testnet"
	"github.com/groupvpn/groupvpn/isakmp"
)

func seqKey(n int, from byte) []byte {
	k := make([]byte, n)
	for i := range k {
		k[i] = from + byte(i)
	}
	return k
}

func keyLogGCM(spi uint32, bits int) sadb.TEK {
	return sadb.TEK{Group: "GET", SPI: spi, Protocol: isakmp.TEKProtoESP, Transform: uint8(isakmp.ESPAESGCM16),
		KeyBits: bits, EncKey: seqKey(bits/8+4, 1), SenderIDs: []uint32{7}, SIDBits: 16}
}

func keyLogCBC(spi uint32, bits int, alg uint16, akl int) sadb.TEK {
	return sadb.TEK{Group: "GET", SPI: spi, Protocol: isakmp.TEKProtoESP, Transform: uint8(isakmp.ESPAESCBC),
		KeyBits: bits, AuthAlg: alg, EncKey: seqKey(bits/8, 0x40), AuthKey: seqKey(akl, 0x80)}
}

// proves: E1 (issue 12: the TEK read from tmd, in Wireshark's ESP SA table
// format) — each transform's entry, byte for byte; a TEK the table cannot
// express is a comment only.
func TestKeyLogFormat(t *testing.T) {
	at := time.Date(2026, 12, 6, 4, 10, 0, 0, time.UTC)
	ah := sadb.TEK{Group: "GET", SPI: 5, Protocol: isakmp.TEKProtoAH, Transform: 3}
	gmac := sadb.TEK{Group: "GET", SPI: 6, Protocol: isakmp.TEKProtoESP, Transform: uint8(isakmp.ESPAESGMAC), EncKey: seqKey(20, 1)}
	var b bytes.Buffer
	for _, tek := range []sadb.TEK{keyLogGCM(0x1a2b3c4d, 128), keyLogCBC(2, 256, isakmp.AuthAlgHMACSHA256, 32),
		keyLogCBC(3, 128, isakmp.AuthAlgHMACSHA1, 20), ah, gmac} {
		if err := WriteKeyLog(&b, tek, at); err != nil {
			t.Fatal(err)
		}
	}
	want := `# 2026-12-06T04:10:00Z group "GET" spi 0x1a2b3c4d
"IPv4","*","*","0x1a2b3c4d","AES-GCM with 16 octet ICV [RFC4106]","0x0102030405060708090a0b0c0d0e0f1011121314","NULL",""
# 2026-12-06T04:10:00Z group "GET" spi 0x00000002
"IPv4","*","*","0x00000002","AES-CBC [RFC3602]","0x404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f","HMAC-SHA-256-128 [RFC4868]","0x808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
# 2026-12-06T04:10:00Z group "GET" spi 0x00000003
"IPv4","*","*","0x00000003","AES-CBC [RFC3602]","0x404142434445464748494a4b4c4d4e4f","HMAC-SHA-1-96 [RFC2404]","0x808182838485868788898a8b8c8d8e8f90919293"
# 2026-12-06T04:10:00Z group "GET" spi 0x00000005
# (no entry: not ESP)
# 2026-12-06T04:10:00Z group "GET" spi 0x00000006
# (no entry: ESP transform 23 has no entry in Wireshark's ESP SA table)
`
	if b.String() != want {
		t.Errorf("key log:\n%s\nwant:\n%s", b.String(), want)
	}
	// A group name cannot break out of its comment line.
	b.Reset()
	evil := keyLogGCM(9, 128)
	evil.Group = "G\n\"IPv4\",\"*\""
	WriteKeyLog(&b, evil, at)
	if lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[0], "# ") {
		t.Errorf("a group name with a newline:\n%s", b.String())
	}
}

// proves: E1 (issue 12: tmd exports the TEKs it installs, off by default)
// — with Options.KeyLog every TEK installed under a new group and SPI is
// appended once (a re-install of the same SPI, a KEK are not); without it
// nothing is written anywhere.
func TestKeyLogWrittenOnInstall(t *testing.T) {
	var kl testnet.Buffer
	path := sockPath(t)
	startWith(t, path, Options{KeyLog: &kl})
	c := dial(t, path, "isakmpd")
	t1, t2 := keyLogGCM(0x101, 256), keyLogCBC(0x202, 128, isakmp.AuthAlgHMACSHA1, 20)
	for _, tek := range []sadb.TEK{t1, t1, t2} {
		if err := c.InstallTEK(tek); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.InstallKEK(fullKEK("GET")); err != nil {
		t.Fatal(err)
	}
	got := kl.String()
	if n := strings.Count(got, `"IPv4"`); n != 2 || !strings.Contains(got, `"0x00000101"`) || !strings.Contains(got, `"0x00000202"`) {
		t.Errorf("key log after installing 0x101 twice and 0x202 and a KEK:\n%s", got)
	}
	for _, k := range [][]byte{t1.EncKey, t2.EncKey, t2.AuthKey} {
		if !strings.Contains(got, hex.EncodeToString(k)) {
			t.Errorf("key log lacks key %x:\n%s", k, got)
		}
	}
}

// udpInner is an IPv4/UDP packet (UDP checksum 0) carrying payload.
func udpInner(src, dst [4]byte, payload []byte) []byte {
	p := make([]byte, 28+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8], p[9] = 64, 17
	copy(p[12:16], src[:])
	copy(p[16:20], dst[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(p[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(p[20:], 4000)
	binary.BigEndian.PutUint16(p[22:], 5000)
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload)))
	copy(p[28:], payload)
	return p
}

// proves: E1 (issue 12: an independent implementation reads the key log)
// — tshark, given only the key log as its esp_sa table, decrypts ESP that
// internal/esp sealed with each transform (and checks the HMAC of the CBC
// ones) down to the inner UDP payload; with a key log of other keys it
// cannot.
func TestKeyLogTsharkDecrypts(t *testing.T) {
	testnet.RequireTools(t, "tshark")
	teks := []sadb.TEK{keyLogGCM(0x1001, 128), keyLogGCM(0x1002, 256),
		keyLogCBC(0x1003, 128, isakmp.AuthAlgHMACSHA1, 20), keyLogCBC(0x1004, 256, isakmp.AuthAlgHMACSHA256, 32)}
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "esp.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := pcap.NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	var kl, wrong bytes.Buffer
	for i, tek := range teks {
		sa, err := esp.New(tek, esp.Config{})
		if err != nil {
			t.Fatal(err)
		}
		pkt, err := sa.Seal(nil, udpInner([4]byte{10, 1, 1, 2}, [4]byte{10, 1, 2, 2}, []byte("KEYLOG-MARKER-"+string(rune('A'+i)))))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WritePacket(time.Now(), pkt); err != nil {
			t.Fatal(err)
		}
		WriteKeyLog(&kl, tek, time.Now())
		tek.EncKey = seqKey(len(tek.EncKey), 0x33)
		WriteKeyLog(&wrong, tek, time.Now())
	}
	f.Close()
	decode := func(keylog []byte) []string {
		home := filepath.Join(t.TempDir(), "home")
		conf := filepath.Join(home, ".config", "wireshark")
		if err := os.MkdirAll(conf, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(conf, "esp_sa"), keylog, 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("tshark", "-n", "-r", filepath.Join(dir, "esp.pcap"),
			"-o", "esp.enable_encryption_decode:TRUE", "-o", "esp.enable_authentication_check:TRUE",
			"-T", "fields", "-E", "separator=|", "-e", "esp.spi", "-e", "udp.dstport", "-e", "data.data", "-e", "esp.icv_good")
		cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"))
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("tshark: %v", err)
		}
		return strings.Split(strings.TrimSpace(string(out)), "\n")
	}
	lines := decode(kl.Bytes())
	if len(lines) != len(teks) {
		t.Fatalf("tshark printed %d lines, want %d:\n%s", len(lines), len(teks), strings.Join(lines, "\n"))
	}
	for i, l := range lines {
		f := strings.Split(l, "|")
		marker := hex.EncodeToString([]byte("KEYLOG-MARKER-" + string(rune('A'+i))))
		if len(f) != 4 || f[1] != "5000" || f[2] != marker {
			t.Errorf("%s: tshark decoded %q; want the inner UDP to port 5000 carrying %s", fmt.Sprintf("SPI %#x", teks[i].SPI), l, marker)
		}
		if teks[i].AuthAlg != 0 && f[3] != "1" && f[3] != "True" {
			t.Errorf("%s: tshark did not verify the ICV: %q", fmt.Sprintf("SPI %#x", teks[i].SPI), l)
		}
	}
	for i, l := range decode(wrong.Bytes()) {
		if strings.Contains(l, hex.EncodeToString([]byte("KEYLOG-MARKER"))) {
			t.Errorf("packet %d decrypted with the wrong keys: %q", i, l)
		}
	}
}

// proves: T2, E1 (issue 12: the key log decrypts time-based anti-replay
// packets too) — tshark, given the key log of a TBAR TEK, decrypts a packet
// internal/esp sealed with a pseudotime into a plaintext that starts with
// the pseudotime header of docs/wire.md (04 0c 01 00, then the
// milliseconds), the inner packet after it, and ends with Next Header 253.
func TestKeyLogTsharkDecryptsTBAR(t *testing.T) {
	testnet.RequireTools(t, "tshark")
	tek := keyLogGCM(0x2001, 128)
	tek.ReplayMethod, tek.ReplayWindow = isakmp.ReplayTime, 5
	sa, err := esp.New(tek, esp.Config{})
	if err != nil {
		t.Fatal(err)
	}
	inner := udpInner([4]byte{10, 1, 1, 2}, [4]byte{10, 1, 2, 2}, []byte("TBAR-MARKER"))
	pkt, err := sa.SealAt(nil, inner, 1234567*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "esp.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	w, _ := pcap.NewWriter(f)
	if err := w.WritePacket(time.Now(), pkt); err != nil {
		t.Fatal(err)
	}
	f.Close()
	conf := filepath.Join(dir, "home", ".config", "wireshark")
	os.MkdirAll(conf, 0o700)
	var kl bytes.Buffer
	WriteKeyLog(&kl, tek, time.Now())
	if err := os.WriteFile(filepath.Join(conf, "esp_sa"), kl.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("tshark", "-n", "-r", filepath.Join(dir, "esp.pcap"), "-o", "esp.enable_encryption_decode:TRUE",
		"-T", "fields", "-e", "data.data")
	cmd.Env = append(os.Environ(), "HOME="+filepath.Join(dir, "home"), "XDG_CONFIG_HOME="+filepath.Join(dir, "home", ".config"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	// tshark knows no Next Header 253: it shows the whole plaintext, the
	// trailer (padding, Pad Length, Next Header fd) included.
	got := strings.TrimSpace(string(out))
	head := "040c0100" + "000000000012d687" + hex.EncodeToString(inner)
	if !strings.HasPrefix(got, head) || !strings.HasSuffix(got, "fd") {
		t.Errorf("tshark decrypted a TBAR packet as\n%s\nwant\n%s...fd", got, head)
	}
}
