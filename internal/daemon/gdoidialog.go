package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/groupvpn/groupvpn/internal/ctl"
)

// The dialog of GM removal and policy replace, shared by isakmpd's
// handlers (gdoi.go) and ikev2d's (internal/ikev2d/commands.go) so that
// both daemons ask and answer with the same bytes (SPEC R1, R4, P2;
// issue 17).

// SelectKSGroups resolves the optional [group NAME] of a KS command (its
// Args key "group") against the groups this KS serves (groups, in order):
// every group without it, the one named (case-insensitively) with it. The
// errors are isakmpd's texts.
func SelectKSGroups(groups []string, req *ctl.Request) ([]string, error) {
	if len(groups) == 0 {
		return nil, errors.New(errNotKS)
	}
	if g, ok := req.Args["group"]; ok {
		for _, x := range groups {
			if strings.EqualFold(x, g) {
				return []string{x}, nil
			}
		}
		return nil, fmt.Errorf("%% group %s is not served by this key server", g)
	}
	return groups, nil
}

// ConfirmRemoval asks the questions of `clear crypto gdoi ks members
// [now]` for group: the removal (or immediate removal) prompt and, when
// not every device of the group supports the feature (allSupport false,
// SPEC V2), the mixed-version warning. It reports whether the operator
// answered yes to each; like every ctl question it returns a
// *ctl.PromptError while an answer is missing.
func ConfirmRemoval(req *ctl.Request, group string, now, allSupport bool) (bool, error) {
	prompt := promptRemoval
	if now {
		prompt = promptRemovalNow
	}
	ok, err := req.Confirm(prompt)
	if err != nil || !ok {
		return false, err
	}
	if !allSupport {
		return req.Confirm(fmt.Sprintf(warnRemoval, group))
	}
	return true, nil
}

// RemovalSent is the line the removal command prints for group once the
// removal message is sent.
func RemovalSent(group string) string {
	return fmt.Sprintf("Sending GM-Removal message to group %s...\n", group)
}

// ReplaceSent is the line `crypto gdoi ks rekey [replace-now]` prints for
// group once the policy-replace rekey is sent.
func ReplaceSent(group string) string {
	return fmt.Sprintf("Rekey with policy-replace sent for group %s\n", group)
}

// ErrFeaturesNotKS is the answer of `show crypto gdoi feature ...` on a
// node that is no key server.
func ErrFeaturesNotKS() error {
	return errors.New("% this node is not a key server: run the command on the (primary) KS")
}

// Audit makes srv log its state-changing commands, and their refusal to a
// read-only user, to l as isakmpd's control socket does (IOS's
// %PARSER-5-CFGLOG_LOGGEDCMD and %PARSER-4-CFGLOG_DENIED, SPEC O6).
func Audit(srv *ctl.Server, l *slog.Logger) {
	srv.SetAudit(func(_ context.Context, user, line string, denied bool) { auditCommand(l, user, line, denied) })
}
