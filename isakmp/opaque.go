package isakmp

// The payloads in this file carry one opaque value after the generic header
// and nothing else.

// KE is the Key Exchange payload (RFC 2408 §3.7): the Diffie-Hellman public
// value, formatted per the group (RFC 2409 §5, RFC 5903 §7 for ECP groups).
type KE struct{ Data []byte }

func (*KE) Type() PayloadType            { return PayloadKE }
func (p *KE) BodyLen() int               { return len(p.Data) }
func (p *KE) AppendBody(b []byte) []byte { return append(b, p.Data...) }
func parseKE(b []byte) (*KE, error)      { return &KE{Data: own(b)}, nil }

// Hash is the Hash payload (RFC 2408 §3.11): the output of the negotiated
// PRF, e.g. HASH_I/HASH_R of RFC 2409 §5 or HASH(1..4) of GROUPKEY-PULL
// (RFC 6407 §3.2).
type Hash struct{ Data []byte }

func (*Hash) Type() PayloadType            { return PayloadHash }
func (p *Hash) BodyLen() int               { return len(p.Data) }
func (p *Hash) AppendBody(b []byte) []byte { return append(b, p.Data...) }
func parseHash(b []byte) (*Hash, error)    { return &Hash{Data: own(b)}, nil }

// Sig is the Signature payload (RFC 2408 §3.12), used for phase-1
// signature authentication (RFC 2409 §5.1) and the GROUPKEY-PUSH signature
// (RFC 6407 §4.1.1).
type Sig struct{ Data []byte }

func (*Sig) Type() PayloadType            { return PayloadSig }
func (p *Sig) BodyLen() int               { return len(p.Data) }
func (p *Sig) AppendBody(b []byte) []byte { return append(b, p.Data...) }
func parseSig(b []byte) (*Sig, error)     { return &Sig{Data: own(b)}, nil }

// Nonce is the Nonce payload (RFC 2408 §3.13; RFC 6407 §5.7).
type Nonce struct{ Data []byte }

func (*Nonce) Type() PayloadType            { return PayloadNonce }
func (p *Nonce) BodyLen() int               { return len(p.Data) }
func (p *Nonce) AppendBody(b []byte) []byte { return append(b, p.Data...) }
func parseNonce(b []byte) (*Nonce, error)   { return &Nonce{Data: own(b)}, nil }

// VendorID is the Vendor ID payload (RFC 2408 §3.16). groupvpn announces its
// software version in one (docs/wire.md).
type VendorID struct{ Data []byte }

func (*VendorID) Type() PayloadType             { return PayloadVendorID }
func (p *VendorID) BodyLen() int                { return len(p.Data) }
func (p *VendorID) AppendBody(b []byte) []byte  { return append(b, p.Data...) }
func parseVendorID(b []byte) (*VendorID, error) { return &VendorID{Data: own(b)}, nil }
