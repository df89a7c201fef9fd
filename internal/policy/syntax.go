package policy

// Syntaxes lists the commands of the editor's current configuration mode
// and of the modes enclosing it, innermost first, each in the notation of
// docs/config.md ("rekey lifetime seconds SECONDS"): the CLI's
// abbreviations and its ? and TAB in configuration mode (ctl.Grammar) are
// made from them.
func (e *Editor) Syntaxes() [][]string {
	st := e.frames()
	out := make([][]string, 0, len(st))
	for i := len(st) - 1; i >= 0; i-- {
		var lv []string
		for _, c := range st[i].mode.cmds {
			lv = append(lv, c.syntax)
		}
		out = append(out, lv)
	}
	return out
}
