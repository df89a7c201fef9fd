package ctl

import (
	"context"
	"strings"
)

// Run resolves line against the server's commands and runs its handler
// with answers (the answers so far to its prompts) and input, as Do would,
// but without output filters, the read-only check or the audit: for a
// caller that did both, such as a configuration session running a command
// IOS accepts in configuration mode without saving it (crypto key
// generate). A question the handler asks comes back as a *PromptError.
func (s *Server) Run(ctx context.Context, line string, answers []string, input string) (*Reply, error) {
	res, err := resolve(s.commands(), line)
	if err != nil {
		return nil, err
	}
	req := &Request{Line: strings.TrimSpace(line), Input: input, Answers: answers}
	if n := len(answers); n > 0 {
		req.Answer = answers[n-1]
	}
	res.bind(req)
	return s.call(ctx, res.cmd, req)
}

type requestKey struct{}

// RequestOf returns the request a configuration session's line came in
// (its answers to prompts): ConfigSession.Line may ask questions by
// returning a *PromptError, and is called again with the answers.
func RequestOf(ctx context.Context) (*Request, bool) {
	r, ok := ctx.Value(requestKey{}).(*Request)
	return r, ok
}
