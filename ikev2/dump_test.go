package ikev2

import (
	"strings"
	"testing"
)

// proves: G1 (issue 17: Dump names every field by the registry of its
// place: transforms, GSA and GWP attributes, key bag attributes)
func TestDumpNamesFieldsByPlace(t *testing.T) {
	var sb strings.Builder
	Dump(&sb, messageGoldens()[0].msg)
	for _, g := range innerGoldens() {
		ps, err := ParseInner(g.first, unhex(t, g.hex))
		if err != nil {
			t.Fatal(err)
		}
		DumpPayloads(&sb, ps)
	}
	out := sb.String()
	for _, w := range []string{
		"IKEv2 spii=1112131415161718", "exch=IKE_SA_INIT", "ENCR=ENCR_AES_GCM_16", "KEY_LENGTH = 128",
		"KE group=ECP_256 64 octets", "N(NAT_DETECTION_SOURCE_IP)",
		"IDi ID_FQDN \"gm1.example\"", "TSi 1 selectors", "10.1.0.0-10.1.255.255",
		"GIKE_UPDATE policy spi=303132333435363738393a3b3c3d3e3f", "KWA=KW_5649_256", "GCAUTH=DIGITAL_SIGNATURE",
		"SIGNATURE_ALGORITHM_IDENTIFIER = 300a06082a8648ce3d040302", "GSA_INITIAL_MESSAGE_ID = 00000007",
		"SN=32_BIT_UNSPECIFIED", "GW policy", "GWP_SENDER_ID_BITS = 8",
		"GIKE_UPDATE key bag", "SA_KEY = ", "member key bag", "WRAP_KEY = 00000009", "GM_SENDER_ID = 00000005",
		"AUTH DIGITAL_SIGNATURE algorithm=300a06082a8648ce3d040302 signature=8 octets",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("dump lacks %q", w)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}
