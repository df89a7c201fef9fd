package isakmp

import (
	"strings"
	"testing"
)

func TestDumpNamesFieldsByPlace(t *testing.T) {
	for _, g := range goldenMessages(t) {
		var sb strings.Builder
		Dump(&sb, g.msg)
		out := sb.String()
		var want []string
		switch g.name {
		case "pull2":
			want = []string{"SAK protocol=17 src=ID_IPV4_ADDR 192.0.2.1/32", "KEK_KEY_LIFETIME = 00015180",
				"GAP", "ACTIVATION_TIME_DELAY = 30", "SAT GDOI_PROTO_IPSEC_ESP", "spi=11223344", "SA-Direction = 3"}
		case "pull4":
			want = []string{"SEQ 7", "TEK spi=11223344", "TEK_ALGORITHM_KEY", "KEK_ALGORITHM_KEY", "SID_VALUE = 00000003"}
		case "mm1":
			want = []string{"proposal #1 protocol=PROTO_ISAKMP", "Encryption-Algorithm = 7", "Life-Duration = 28800"}
		case "pull1":
			want = []string{"ID ID_KEY_ID 1234"}
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: dump lacks %q:\n%s", g.name, w, out)
			}
		}
	}
}
