package lab

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// SummaryRows is the largest lab whose every member Summary and
// TrafficReport.Print list: above it (unless Options.All) they print the
// first and last SummaryEnds members, counts and address ranges, and how
// to see the rest.
const (
	SummaryRows = 10
	SummaryEnds = 3
)

// rowsShown says which of n rows to print: every one, or the first and
// the last SummaryEnds with the number skipped between them.
func rowsShown(n int, all bool) (show func(i int) bool, skipped int) {
	return rowsEnds(n, all, SummaryEnds)
}

func rowsEnds(n int, all bool, ends int) (show func(i int) bool, skipped int) {
	if all || n <= SummaryRows {
		return func(int) bool { return true }, 0
	}
	return func(i int) bool { return i < ends || i >= n-ends }, n - 2*ends
}

// skipLine is the line printed in place of the rows not shown.
func skipLine(out io.Writer, indent string, skipped int, what string) {
	fmt.Fprintf(out, "%s… %d more %s (groupvpn lab --all lists every member) …\n", indent, skipped, what)
}

// ksEnds is how many member sections of `show crypto gdoi ks members`
// (ten lines each) a summarised lab prints at each end.
const ksEnds = 1

// summariseKSMembers shortens `show crypto gdoi ks members` for a large
// lab: the header, the first and last SummaryEnds member sections, and a
// line counting those left out.
func summariseKSMembers(text string, all bool) string {
	const sep = "\n\nGroup Member ID"
	parts := strings.Split(text, sep)
	head, sections := parts[0], parts[1:]
	show, skipped := rowsEnds(len(sections), all, ksEnds)
	if skipped == 0 {
		return text
	}
	var sb strings.Builder
	sb.WriteString(head)
	for i, s := range sections {
		if i == ksEnds {
			fmt.Fprintf(&sb, "\n\n… %d more member sections (groupvpn lab --all, or show crypto gdoi ks members in groupvpn lab --cli) …", skipped)
		}
		if show(i) {
			sb.WriteString(sep + s)
		}
	}
	return sb.String()
}

// countLine renders a count per state, most frequent first: "50 registered".
func countLine(counts map[string]int) string {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool {
		if counts[keys[a]] != counts[keys[b]] {
			return counts[keys[a]] > counts[keys[b]]
		}
		return keys[a] < keys[b]
	})
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = fmt.Sprintf("%d %s", counts[k], k)
	}
	return strings.Join(out, ", ")
}
