package isakmp

// GAPAttr is a Group Associated Policy attribute type (RFC 6407 §5.4);
// all three defined attributes are Basic (TV).
type GAPAttr uint16

const (
	GAPActivationTimeDelay   GAPAttr = 1 // seconds a sender waits before using a new TEK (§5.4.1)
	GAPDeactivationTimeDelay GAPAttr = 2 // seconds a receiver keeps an old TEK (§5.4.1)
	GAPSenderIDRequest       GAPAttr = 3 // number of sender IDs a GM asks for (§5.4.2)
)

var gapAttrNames = map[GAPAttr]string{
	GAPActivationTimeDelay: "ACTIVATION_TIME_DELAY", GAPDeactivationTimeDelay: "DEACTIVATION_TIME_DELAY",
	GAPSenderIDRequest: "SENDER_ID_REQUEST",
}

func (a GAPAttr) String() string { return nameOf(gapAttrNames, a, "GAP_ATTR") }

// GAP is the Group Associated Policy payload (RFC 6407 §5.4, Figure 6):
//
//	! Next Payload  !   RESERVED    !        Payload Length         !
//	!               Group Associated Policy Attributes              ~
//
// The KS sends it inside the SA payload, after any SAK and before the SATs;
// a GM may send it on its own in GROUPKEY-PULL message 3 to request sender
// IDs (SENDER_ID_REQUEST).
type GAP struct {
	Attributes Attributes // GAPAttr types
}

func (*GAP) Type() PayloadType            { return PayloadGAP }
func (p *GAP) BodyLen() int               { return p.Attributes.Len() }
func (p *GAP) AppendBody(b []byte) []byte { return p.Attributes.Append(b) }

func parseGAP(b []byte) (*GAP, error) {
	as, err := parseAttributes(b)
	if err != nil {
		return nil, wrapAt("GAP payload", 0, err)
	}
	return &GAP{Attributes: as}, nil
}
