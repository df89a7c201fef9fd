package ctl

import "errors"

// Match resolves a command line (its command part) against the commands
// registered on s, as Session.Do does before it runs a handler, without
// running it: the external fuzz test matches against the daemon's real
// command table with it. pos is the '^' offset of a parse error, or -1.
func (s *Server) Match(line string) (req *Request, pos int, err error) {
	cmdPart, _ := splitFilters(line)
	res, err := resolve(s.commands(), cmdPart)
	if err != nil {
		pos = -1
		var pe *parseError
		if errors.As(err, &pe) {
			pos = pe.pos
		}
		return nil, pos, err
	}
	req = &Request{Line: cmdPart}
	res.bind(req)
	return req, -1, nil
}

// Patterns lists the registered patterns.
func (s *Server) Patterns() []string {
	var p []string
	for _, c := range s.commands() {
		p = append(p, c.pattern)
	}
	return p
}
