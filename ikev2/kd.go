package ikev2

import "encoding/binary"

// Group Key Bag attribute types (RFC 9838 §4.5.2, IANA "Group Key Bag
// Attributes"); TLV.
const (
	KBSAKey uint16 = 1 // a WrappedKey with Key ID 0 (§4.5.2.1)
)

// Member Key Bag attribute types (RFC 9838 §4.5.3, IANA "Member Key Bag
// Attributes"); TLV.
const (
	KBWrapKey    uint16 = 1 // a WrappedKey with Key ID not 0, multi-valued (§4.5.3.1)
	KBAuthKey    uint16 = 2 // DER SubjectPublicKeyInfo of the GCKS's rekey signing key, once (§4.5.3.2)
	KBGMSenderID uint16 = 3 // one Sender-ID for this GM, multi-valued (§4.5.3.3)
)

// Bounds on the KD payload.
const (
	MaxKeyBags = 64 // key bags in one KD payload
)

var groupKeyBagAttrNames = map[uint16]string{KBSAKey: "SA_KEY"}
var memberKeyBagAttrNames = map[uint16]string{KBWrapKey: "WRAP_KEY", KBAuthKey: "AUTH_KEY", KBGMSenderID: "GM_SENDER_ID"}

// KeyBagAttrName names an attribute type of a group key bag (member false)
// or a member key bag (member true).
func KeyBagAttrName(member bool, t uint16) string {
	if member {
		return nameOf(memberKeyBagAttrNames, t, "MEMBER_KEY_BAG_ATTR")
	}
	return nameOf(groupKeyBagAttrNames, t, "GROUP_KEY_BAG_ATTR")
}

// KD is the Key Download payload (RFC 9838 §4.5, Figure 19):
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Next Payload  |C|  RESERVED   |            Length             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                           <Key Bags>                          ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// "The type is unambiguously determined by the first byte of the key bag
// substructure -- for member key bag it is zero and for group key bag it
// represents the protocol number" (§4.5.1).
type KD struct {
	Bags []*KeyBag
}

func (*KD) Type() PayloadType { return PayloadKD }

func (p *KD) BodyLen() int {
	n := 0
	for _, k := range p.Bags {
		n += k.len()
	}
	return n
}

func (p *KD) AppendBody(b []byte) []byte {
	for _, k := range p.Bags {
		b = k.append(b)
	}
	return b
}

// Bag returns the group key bag of protocol proto and SPI spi, or, for
// proto 0, the member key bag; nil if there is none.
func (p *KD) Bag(proto ProtocolID, spi []byte) *KeyBag {
	for _, k := range p.Bags {
		if k.Protocol == proto && (proto == 0 || string(k.SPI) == string(spi)) {
			return k
		}
	}
	return nil
}

// KeyBag is one key bag of a KD payload.
//
// Group Key Bag substructure (RFC 9838 §4.5.2, Figure 20), keys of one SA:
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|    Protocol   |   SPI Size    |            Length             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                              SPI                              ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                  <Group Key Bag Attributes>                   ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Member Key Bag substructure (§4.5.3, Figure 21), Protocol 0, keys and
// parameters of one GM (sent only at registration, never in GSA_REKEY):
//
//	|    Protocol   |   RESERVED    |            Length             |
//	~                  <Member Key Bag Attributes>                  ~
//
// Parsing checks the SPI Size of the protocols §4.5.2 defines (16 for
// GIKE_UPDATE, 4 for AH and ESP), that SA_KEY and WRAP_KEY hold a
// WrappedKey (Key ID 0 for SA_KEY, not 0 for WRAP_KEY) and are TLV, and
// that AUTH_KEY appears at most once ("Multiple instances of the AUTH_KEY
// attributes MUST NOT be sent").
type KeyBag struct {
	Protocol   ProtocolID // 0: member key bag
	SPI        []byte
	Attributes Attributes
}

// IsMember reports a member key bag.
func (k *KeyBag) IsMember() bool { return k.Protocol == 0 }

// WrappedKeys returns the wrapped keys of the bag's SA_KEY (group key bag)
// or WRAP_KEY (member key bag) attributes, in order.
func (k *KeyBag) WrappedKeys() []WrappedKey {
	t := KBSAKey
	if k.IsMember() {
		t = KBWrapKey
	}
	var out []WrappedKey
	for _, a := range k.Attributes {
		if a.Type == t && !a.Basic {
			if w, err := ParseWrappedKey(a.Data); err == nil {
				out = append(out, w)
			}
		}
	}
	return out
}

func (k *KeyBag) len() int { return 4 + len(k.SPI) + k.Attributes.Len() }

func (k *KeyBag) append(b []byte) []byte {
	b = append(b, byte(k.Protocol), byte(len(k.SPI)))
	b = appendU16(b, uint16(k.len()))
	b = append(b, k.SPI...)
	return k.Attributes.Append(b)
}

func parseKD(b []byte) (*KD, error) {
	r := newReader("KD payload", b)
	p := &KD{}
	if len(b) == 0 {
		r.fail("no key bag")
	}
	members := 0
	for r.err == nil && r.left() > 0 {
		if len(p.Bags) == MaxKeyBags {
			r.fail("more than %d key bags", MaxKeyBags)
			break
		}
		at := r.off
		s := r.sub(2, 4)
		if r.err != nil {
			break
		}
		k, err := parseKeyBag(s)
		if err == nil && k.IsMember() {
			if members++; members > 1 {
				err = errMalformed("key bag", 0, "a second member key bag")
			}
		}
		if err != nil {
			r.err = wrapAt("KD payload: key bag "+itoa(len(p.Bags)+1), at, err)
			break
		}
		p.Bags = append(p.Bags, k)
	}
	return p, r.err
}

func parseKeyBag(b []byte) (*KeyBag, error) {
	r := newReader("key bag", b)
	k := &KeyBag{Protocol: ProtocolID(r.u8())}
	spiSize := int(r.u8())
	r.skip(2)
	if k.IsMember() {
		spiSize = 0 // RESERVED in a member key bag: ignored
	} else if want := policySPISize(k.Protocol); want >= 0 && spiSize != want {
		return k, errMalformed("key bag", 1, "%s key bag with SPI Size %d (must be %d)", k.Protocol, spiSize, want)
	}
	k.SPI = r.bytes(spiSize)
	if r.err != nil {
		return k, r.err
	}
	at := r.off
	as, err := parseAttributes("key bag attributes", b[at:])
	if err != nil {
		return k, wrapAt("key bag", at, err)
	}
	k.Attributes = as
	auth := 0
	for i, a := range as {
		var wrapped, nonZeroID bool
		switch {
		case k.IsMember() && a.Type == KBWrapKey:
			wrapped, nonZeroID = true, true
		case k.IsMember() && a.Type == KBAuthKey:
			if auth++; auth > 1 {
				return k, errMalformed("key bag", at, "attribute %d: a second AUTH_KEY", i+1)
			}
		case !k.IsMember() && a.Type == KBSAKey:
			wrapped = true
		}
		if (wrapped || (k.IsMember() && a.Type <= KBGMSenderID && a.Type != 0)) && a.Basic {
			return k, errMalformed("key bag", at, "attribute %d: %s in TV format (must be TLV)", i+1, KeyBagAttrName(k.IsMember(), a.Type))
		}
		if !wrapped {
			continue
		}
		w, err := ParseWrappedKey(a.Data)
		if err != nil {
			return k, wrapAt("key bag: attribute "+itoa(i+1), at, err)
		}
		if (w.KeyID != 0) != nonZeroID {
			return k, errMalformed("key bag", at, "attribute %d: %s with Key ID %d (RFC 9838 §4.5.2.1, §4.5.3.1)", i+1, KeyBagAttrName(k.IsMember(), a.Type), w.KeyID)
		}
	}
	return k, nil
}

// WrappedKey is the value of an SA_KEY or WRAP_KEY attribute (RFC 9838
// §4.5.4, Figure 22):
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                              Key ID                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                              KWK ID                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                          Encrypted Key                        ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Key ID 0: the key is SA keying material; KWK ID 0: it is wrapped with the
// default KWK (SK_w of the unicast IKE SA, GSK_w of the Rekey SA, §3.1.1).
// Encrypted is the key wrap algorithm's output (RFC 5649 for KW_5649_*:
// 8 octets longer than the padded key, a multiple of 8, at least 16);
// unwrapping is the SA layer's. Parsing requires a non-empty Encrypted Key.
type WrappedKey struct {
	KeyID     uint32
	KWKID     uint32
	Encrypted []byte
}

// Append appends the wrapped key.
func (w WrappedKey) Append(b []byte) []byte {
	return append(appendU32(appendU32(b, w.KeyID), w.KWKID), w.Encrypted...)
}

// Attr returns the wrapped key as an attribute of type t (KBSAKey or
// KBWrapKey).
func (w WrappedKey) Attr(t uint16) Attribute { return VarAttr(t, w.Append(nil)) }

// ParseWrappedKey decodes an SA_KEY or WRAP_KEY value.
func ParseWrappedKey(b []byte) (WrappedKey, error) {
	if len(b) < 9 {
		return WrappedKey{}, errMalformed("wrapped key", 0, "%d octets (Key ID, KWK ID and at least one octet of Encrypted Key are 9)", len(b))
	}
	return WrappedKey{
		KeyID:     binary.BigEndian.Uint32(b),
		KWKID:     binary.BigEndian.Uint32(b[4:]),
		Encrypted: own(b[8:]),
	}, nil
}
