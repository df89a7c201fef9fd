package isakmp

import (
	"fmt"
	"io"
	"strings"
)

// Dump writes a readable, indented rendering of m: the header and every
// payload with its fields, attributes named by the registry of the place
// they sit in. It is meant for operators and debug logs; the format is not
// an interface.
func Dump(w io.Writer, m *Message) {
	d := dumper{w: w}
	d.line(0, "ISAKMP %s", &m.Header)
	if m.Encrypted() {
		d.line(1, "encrypted body: %d octets", len(m.Body))
		return
	}
	for _, p := range m.Payloads {
		d.payload(1, p)
	}
}

// DumpPayloads renders a payload chain, such as a decrypted body.
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

func named[T ~uint16](v uint16) string { return fmt.Sprint(T(v)) }

func kdAttrName(t KDType) func(uint16) string {
	names := map[KDType][]string{
		KDTEK: {1: "TEK_ALGORITHM_KEY", 2: "TEK_INTEGRITY_KEY", 3: "TEK_SOURCE_AUTH_KEY"},
		KDKEK: {1: "KEK_ALGORITHM_KEY", 2: "SIG_ALGORITHM_KEY"},
		KDLKH: {1: "LKH_DOWNLOAD_ARRAY", 2: "LKH_UPDATE_ARRAY", 3: "SIG_ALGORITHM_KEY"},
		KDSID: {1: "NUMBER_OF_SID_BITS", 2: "SID_VALUE"},
	}[t]
	return func(v uint16) string {
		if int(v) < len(names) && names[v] != "" {
			return names[v]
		}
		return fmt.Sprintf("KD_ATTR(%d)", v)
	}
}

func (d dumper) payload(i int, p Payload) {
	switch p := p.(type) {
	case *SA:
		d.line(i, "SA doi=%s situation=%d", p.DOI, p.Situation)
		for _, pr := range p.Proposals {
			d.line(i+1, "proposal #%d protocol=%s spi=%x", pr.Number, pr.Protocol, pr.SPI)
			for _, t := range pr.Transforms {
				d.line(i+2, "transform #%d id=%d", t.Number, t.ID)
				name := named[IPsecAttr]
				if pr.Protocol == ProtoISAKMP {
					name = named[IKEAttr]
				}
				d.attrs(i+3, t.Attributes, name)
			}
		}
	case *GroupSA:
		d.line(i, "SA doi=GDOI")
		if p.KEK != nil {
			d.line(i+1, "SAK protocol=%d src=%s dst=%s spi=%x", p.KEK.Protocol, p.KEK.Src, p.KEK.Dst, p.KEK.SPI)
			d.attrs(i+2, p.KEK.Attributes, named[KEKAttr])
		}
		if p.GAP != nil {
			d.line(i+1, "GAP")
			d.attrs(i+2, p.GAP.Attributes, named[GAPAttr])
		}
		for _, t := range p.TEKs {
			if !t.isIPsec() {
				d.line(i+1, "SAT protocol=%s %x", t.Protocol, t.Raw)
				continue
			}
			d.line(i+1, "SAT %s protocol=%d src=%s dst=%s transform=%d spi=%08x",
				t.Protocol, t.Selector.Protocol, t.Src, t.Dst, t.TransformID, t.SPI)
			d.attrs(i+2, t.Attributes, named[IPsecAttr])
		}
	case *GAP:
		d.line(i, "GAP")
		d.attrs(i+1, p.Attributes, named[GAPAttr])
	case *KD:
		d.line(i, "KD %d key packets", len(p.Packets))
		for _, k := range p.Packets {
			d.line(i+1, "%s spi=%x", k.KDType, k.SPI)
			d.attrs(i+2, k.Attributes, kdAttrName(k.KDType))
		}
	case *ID:
		d.line(i, "ID %s", p)
	case *Notify:
		d.line(i, "N %s doi=%s protocol=%s spi=%x data=%x", p.NotifyType, p.DOI, p.Protocol, p.SPI, p.Data)
	case *Delete:
		d.line(i, "D doi=%s protocol=%d spi-size=%d spis=%x", p.DOI, p.Protocol, p.SPISize, p.SPIs)
	case *SEQ:
		d.line(i, "SEQ %d", p.Number)
	case *Cert:
		d.line(i, "CERT %s %d octets", p.Encoding, len(p.Data))
	case *CertRequest:
		d.line(i, "CR %s authority=%x", p.CertType, p.Authority)
	case *KE:
		d.line(i, "KE %d octets", len(p.Data))
	case *Hash:
		d.line(i, "HASH %x", p.Data)
	case *Sig:
		d.line(i, "SIG %d octets", len(p.Data))
	case *Nonce:
		d.line(i, "NONCE %x", p.Data)
	case *VendorID:
		d.line(i, "VID %x", p.Data)
	default:
		d.line(i, "%s %d octets", p.Type(), p.BodyLen())
	}
}
