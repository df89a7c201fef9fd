package testnet

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

// A Main Mode excerpt of a charon 5.9.8 initiator log (filelog with
// time_format and ike_name), cut down, with the ASCII column kept as charon
// writes it, including bytes that look like hex digits.
const sampleLog = `20:40:59 07[IKE] <psk|1> shared Diffie Hellman secret => 4 bytes @ 0x7f2578001000
20:40:59 07[IKE] <psk|1>    0: 01 02 03 04                                      ....
20:40:59 07[IKE] <psk|1> SKEYID => 32 bytes @ 0x7f2578001ce0
20:40:59 07[IKE] <psk|1>    0: 7B D4 27 C3 B1 13 78 F0 BC BC 76 B0 7D F4 42 B7  {.'...x...v.}.B.
20:40:59 07[IKE] <psk|1>   16: 1E 80 B7 D7 CD EB 94 DD 96 51 9E 5E A0 EF 3C 42  .........Q.^..<B
20:40:59 07[IKE] <psk|1> encryption key Ka => 16 bytes @ 0x7f2578001c70
20:40:59 07[IKE] <psk|1>    0: 20 53 A2 72 E1 AF 0E E2 5F 6E 8C EF 71 E0 CB 4D   S.r...._n..q..M
20:40:59 07[IKE] <psk|1> natd_chunk => 22 bytes @ 0x7f259d7f8a80
20:40:59 07[IKE] <psk|1>    0: 5D F9 24 57 34 2B 31 94 E0 52 E6 9E EF 15 8E 35  ].$W4+1..R.....5
20:40:59 07[IKE] <psk|1>   16: 0A E7 0B 01 01 F4                                ......
20:40:59 07[ENC] <psk|1> generating ID_PROT request 0 [ ID HASH N(INITIAL_CONTACT) ]
20:40:59 07[IKE] <psk|1> next IV for MID 0 => 16 bytes @ 0x7f2578002e00
20:40:59 07[IKE] <psk|1>    0: 72 F8 D8 0E 1F 8B 35 CB 8F EA F9 76 B8 89 FA C8  r.....5....v....
20:40:59 05[NET] <psk|1> received packet: from 10.231.11.2[500] to 10.231.11.1[500] (92 bytes)
20:40:59 05[IKE] <psk|1> next IV for MID 0 => 16 bytes @ 0x7f258c001be0
20:40:59 05[IKE] <psk|1>    0: 59 6A FD 19 55 C6 EE 34 0D FC DA 1C 90 E9 02 3C  Yj..U..4.......<
05[IKE] HASH_R => 3 bytes @ 0x7f258c000c30
05[IKE]    0: AB AB AB                                         AB AB AB
`

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// proves: groundwork (interop harness for IKEv1 with strongSwan)
func TestParseIKEv1Keymat(t *testing.T) {
	km, err := ParseIKEv1Keymat(sampleLog)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{
		"shared Diffie Hellman secret": {1, 2, 3, 4},
		"SKEYID":                       unhex(t, "7BD427C3B11378F0BCBC76B07DF442B7 1E80B7D7CDEB94DD96519E5EA0EF3C42"),
		"encryption key Ka":            unhex(t, "2053A272E1AF0EE25F6E8CEF71E0CB4D"),
		"next IV for MID 0":            unhex(t, "72F8D80E1F8B35CB8FEAF976B889FAC8"),
		"next IV for MID 0#2":          unhex(t, "596AFD1955C6EE340DFCDA1C90E9023C"),
		"HASH_R":                       {0xab, 0xab, 0xab},
	}
	if len(km) != len(want) {
		t.Errorf("got %d values, want %d: %v", len(km), len(want), km)
	}
	for l, w := range want {
		if !bytes.Equal(km[l], w) {
			t.Errorf("%q = %x, want %x", l, km[l], w)
		}
	}

	dumps, err := ParseHexDumps(sampleLog)
	if err != nil {
		t.Fatal(err)
	}
	if len(dumps) != 7 || dumps[3].Label != "natd_chunk" || len(dumps[3].Data) != 22 || dumps[3].IKE != "<psk|1>" || dumps[3].Line != 8 {
		t.Errorf("unexpected dumps: %+v", dumps)
	}
}

// proves: groundwork (interop harness for IKEv1 with strongSwan)
func TestParseIKEv1KeymatErrors(t *testing.T) {
	for name, log := range map[string]string{
		"no keymat":  "00[DMN] Starting IKE charon daemon (strongSwan 5.9.8)\n",
		"truncated":  "07[IKE] SKEYID => 32 bytes @ 0x1\n07[IKE]    0: 7B D4 27 C3 B1 13 78 F0 BC BC 76 B0 7D F4 42 B7  {.'...x...v.}.B.\n",
		"interposed": "07[IKE] SKEYID => 20 bytes @ 0x1\n07[IKE]    0: 7B D4 27 C3 B1 13 78 F0 BC BC 76 B0 7D F4 42 B7  x\n07[NET] sending packet\n",
		"short line": "07[IKE] SKEYID => 4 bytes @ 0x1\n07[IKE]    0: 7B D4 27  {.'\n",
		"bad offset": "07[IKE] SKEYID => 20 bytes @ 0x1\n07[IKE]    0: 7B D4 27 C3 B1 13 78 F0 BC BC 76 B0 7D F4 42 B7  x\n07[IKE]   32: 00 00 00 00  x\n",
	} {
		if km, err := ParseIKEv1Keymat(log); err == nil {
			t.Errorf("%s: no error, got %v", name, km)
		}
	}
}
