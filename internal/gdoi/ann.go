package gdoi

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/groupvpn/groupvpn/isakmp"
)

// COOP announcements (docs/wire.md "COOP announcements") travel between
// key servers inside their IKEv1 phase-1 SA, protected like GROUPKEY-PULL
// messages:
//
//	HDR*(exchange 240), HASH, SEQ, ID, COOP [, SA, KD] [, MEMBERS]
//	HASH = prf(SKEYID_a, M-ID | SEQ | ID | COOP | ...)
//
// Each ANN is one message with a fresh Message ID; nothing answers it.
// SealANN and OpenANN hold no state beyond the SA's IV chains: the replay
// check is the receiver's (internal/coop, on the SEQ). Nothing sends or
// receives ANNs yet.

// ANNProtector is what an ANN needs of the KS-KS phase-1 SA: the
// GROUPKEY-PULL protection plus dropping a finished Message ID's IV chain
// (an ANN is one message; without it a long-lived SA would keep one chain
// per announcement). *ike.SA is one.
type ANNProtector interface {
	Protector
	ForgetMessageID(mid uint32)
}

// SealANN builds an encrypted announcement carrying a, with a random
// non-zero Message ID read from r (nil: crypto/rand).
func SealANN(sa ANNProtector, a *isakmp.ANN, r io.Reader) ([]byte, error) {
	ps, err := a.Payloads()
	if err != nil {
		return nil, err
	}
	b, err := randBytes(r, 4)
	if err != nil {
		return nil, err
	}
	mid := binary.BigEndian.Uint32(b) | 1 // never 0, which is phase 1's
	defer sa.ForgetMessageID(mid)
	return sealIn(sa, isakmp.ExchangeCOOPAnn, mid, nil, ps)
}

// OpenANN decrypts an announcement, checks its HASH and reads its
// payloads. Every error wraps ErrUnauthenticated unless the HASH verified
// (then the payload order was wrong: the peer's own fault).
func OpenANN(sa ANNProtector, m *isakmp.Message) (*isakmp.ANN, error) {
	if m.Header.Exchange != isakmp.ExchangeCOOPAnn {
		return nil, fmt.Errorf("gdoi: %w: exchange %s is not COOP-ANN", ErrUnauthenticated, m.Header.Exchange)
	}
	if m.Header.MessageID == 0 {
		return nil, fmt.Errorf("gdoi: %w: ANN with Message ID 0", ErrUnauthenticated)
	}
	ps, err := sa.OpenPhase2(m, hashChecker(sa, m.Header.MessageID, nil))
	if err != nil {
		return nil, fmt.Errorf("gdoi: %w: %w", ErrUnauthenticated, err)
	}
	// Only an authenticated ANN created a chain for its Message ID; a
	// forged one must not drop the chain of an exchange in progress.
	sa.ForgetMessageID(m.Header.MessageID)
	a, err := isakmp.ParseANN(ps[1:])
	if err != nil {
		return nil, fmt.Errorf("gdoi: ANN: %w", err)
	}
	return a, nil
}
