// Package version is groupvpn's software version in the GET VPN sense
// (SPEC V1): major.minor.mini, where major is the compatibility of all
// devices, minor KS-KS and GM-GM interoperability, and mini features that
// do not affect compatibility.
package version

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is major.minor.mini.
type Version struct{ Major, Minor, Mini uint8 }

var (
	// Base is the first version: registration, rekeys, COOP.
	Base = Version{1, 0, 1}
	// Removal is the first with GM removal and policy replace (SPEC R, P).
	Removal = Version{1, 0, 2}
	// ReplacedCounterTEKs is the first whose GMs take a TEK a rekey
	// replaced, handed out at registration, for opening packets only: one
	// they did not hold is installed without the download's sender IDs,
	// one they held keeps its own (gm.InstallHolding). A key server hands
	// a replaced counter-mode (AES-GCM) TEK to those alone: an earlier GM
	// would give it the download's sender IDs, of the new generation, and
	// reuse another member's nonces (ks/replaced.go).
	ReplacedCounterTEKs = Version{1, 0, 3}
	// Current is what groupvpn speaks: Base plus GM removal and policy
	// replace, plus replaced counter-mode TEKs handed out at registration.
	Current = Version{1, 0, 3}
)

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Mini) }

// IsZero reports an unknown version.
func (v Version) IsZero() bool { return v == Version{} }

// OrCurrent is v, or Current when v is zero: what a node announces when
// no version is configured.
func (v Version) OrCurrent() Version {
	if v.IsZero() {
		return Current
	}
	return v
}

// Less orders versions.
func (v Version) Less(o Version) bool {
	if v.Major != o.Major {
		return v.Major < o.Major
	}
	if v.Minor != o.Minor {
		return v.Minor < o.Minor
	}
	return v.Mini < o.Mini
}

// Parse reads "major.minor.mini".
func Parse(s string) (Version, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return Version{}, fmt.Errorf("version %q: want major.minor.mini, e.g. 1.0.2", s)
	}
	var n [3]uint8
	for i, p := range parts {
		x, err := strconv.ParseUint(p, 10, 8)
		if err != nil {
			return Version{}, fmt.Errorf("version %q: %q is not a number from 0 to 255", s, p)
		}
		n[i] = uint8(x)
	}
	return Version{n[0], n[1], n[2]}, nil
}

// vidMagic opens groupvpn's version Vendor ID (docs/wire.md).
const vidMagic = "groupvpn-version"

// VendorID returns the Vendor ID payload data announcing v: the 16 ASCII
// octets "groupvpn-version" followed by the three octets major, minor,
// mini (docs/wire.md, SPEC V2).
func (v Version) VendorID() []byte {
	return append([]byte(vidMagic), v.Major, v.Minor, v.Mini)
}

// FromVendorID recognises groupvpn's version Vendor ID.
func FromVendorID(b []byte) (Version, bool) {
	if len(b) != len(vidMagic)+3 || string(b[:len(vidMagic)]) != vidMagic {
		return Version{}, false
	}
	n := len(vidMagic)
	return Version{b[n], b[n+1], b[n+2]}, true
}
