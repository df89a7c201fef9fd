package ikev2

import (
	"fmt"
	"io"
	"strings"
)

// Dump writes a readable, indented rendering of m: the header and every
// payload with its fields, attributes named by the registry of the place
// they sit in. An SK or SKF payload shows its inner first type and sizes,
// not its octets. It is meant for operators and debug logs (`groupvpn
// decode`); the format is not an interface.
func Dump(w io.Writer, m *Message) {
	d := dumper{w: w}
	d.line(0, "IKEv2 %s", &m.Header)
	for _, p := range m.Payloads {
		d.payload(1, p)
	}
}

// DumpPayloads renders a payload chain, such as a decrypted inner chain.
func DumpPayloads(w io.Writer, ps []Payload) {
	d := dumper{w: w}
	for _, p := range ps {
		d.payload(0, p)
	}
}

type dumper struct{ w io.Writer }

func (d dumper) line(indent int, format string, args ...any) {
	fmt.Fprintf(d.w, "%s%s\n", strings.Repeat("  ", indent), fmt.Sprintf(format, args...))
}

func (d dumper) attrs(indent int, as Attributes, name func(uint16) string) {
	for _, a := range as {
		if a.Basic {
			d.line(indent, "%s = %d", name(a.Type), a.Value)
		} else {
			d.line(indent, "%s = %x (%d octets)", name(a.Type), a.Data, len(a.Data))
		}
	}
}

func transformAttrName(t uint16) string {
	switch t {
	case AttrKeyLength:
		return "KEY_LENGTH"
	case AttrSignatureAlgorithmID:
		return "SIGNATURE_ALGORITHM_IDENTIFIER"
	}
	return fmt.Sprintf("TRANSFORM_ATTR(%d)", t)
}

func (d dumper) transforms(i int, ts []*Transform) {
	for _, t := range ts {
		d.line(i, "%s=%s", t.Type, TransformIDName(t.Type, t.ID))
		d.attrs(i+1, t.Attributes, transformAttrName)
	}
}

func (d dumper) payload(i int, p Payload) {
	switch p := p.(type) {
	case *SA:
		d.line(i, "SA %d proposals", len(p.Proposals))
		for _, pr := range p.Proposals {
			d.line(i+1, "proposal #%d protocol=%s spi=%x", pr.Number, pr.Protocol, pr.SPI)
			d.transforms(i+2, pr.Transforms)
		}
	case *KE:
		d.line(i, "KE group=%s %d octets", TransformIDName(TransformKE, p.Group), len(p.Data))
	case *ID:
		d.line(i, "%s %s", p.Which, p)
	case *Cert:
		d.line(i, "CERT %s %d octets", p.Encoding, len(p.Data))
	case *CertReq:
		d.line(i, "CERTREQ %s authority=%x", p.Encoding, p.Authority)
	case *Auth:
		if algID, sig, err := p.Signature(); err == nil {
			d.line(i, "AUTH %s algorithm=%x signature=%d octets", p.Method, algID, len(sig))
		} else {
			d.line(i, "AUTH %s %d octets", p.Method, len(p.Data))
		}
	case *Nonce:
		d.line(i, "Nonce %x", p.Data)
	case *Notify:
		d.line(i, "N(%s) protocol=%s spi=%x data=%x", p.NotifyType, p.Protocol, p.SPI, p.Data)
	case *Delete:
		d.line(i, "D protocol=%s spi-size=%d spis=%x", p.Protocol, p.SPISize, p.SPIs)
	case *VendorID:
		d.line(i, "V %x", p.Data)
	case *TS:
		d.line(i, "%s %d selectors", p.Which, len(p.Selectors))
		for _, ts := range p.Selectors {
			d.line(i+1, "%s", ts)
		}
	case *Encrypted:
		d.line(i, "SK inner=%s %d octets", p.Inner, len(p.Data))
	case *EncryptedFragment:
		d.line(i, "SKF fragment %d/%d inner=%s %d octets", p.Number, p.Total, p.Inner, len(p.Data))
	case *GSA:
		d.line(i, "GSA %d policies", len(p.Policies))
		for _, g := range p.Policies {
			if g.IsGW() {
				d.line(i+1, "GW policy")
				d.attrs(i+2, g.Attributes, GWPAttrName)
				continue
			}
			d.line(i+1, "%s policy spi=%x src=%s dst=%s", g.Protocol, g.SPI, g.Src, g.Dst)
			d.transforms(i+2, g.Transforms)
			d.attrs(i+2, g.Attributes, GSAAttrName)
		}
	case *KD:
		d.line(i, "KD %d key bags", len(p.Bags))
		for _, k := range p.Bags {
			if k.IsMember() {
				d.line(i+1, "member key bag")
			} else {
				d.line(i+1, "%s key bag spi=%x", k.Protocol, k.SPI)
			}
			member := k.IsMember()
			d.attrs(i+2, k.Attributes, func(t uint16) string { return KeyBagAttrName(member, t) })
		}
	case *RawPayload:
		c := ""
		if p.Critical {
			c = " critical"
		}
		d.line(i, "%s%s %d octets", p.PayloadType, c, len(p.Body))
	default:
		d.line(i, "%s %d octets", p.Type(), p.BodyLen())
	}
}
