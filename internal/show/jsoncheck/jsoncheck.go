// Package jsoncheck checks a show command's `| json` output against the
// conventions of docs/json.md (snake_case keys, seconds, RFC 3339 UTC
// times, hex SPIs, absent rather than empty). Tests use it: the golden
// files of internal/show and the live output of a running daemon.
package jsoncheck

import (
	"encoding/json"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

var (
	snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	hexValue  = regexp.MustCompile(`^0x[0-9a-f]+$`)
	goDur     = regexp.MustCompile(`^-?([0-9.]+(ns|us|µs|ms|s|m|h))+$`)
)

// conventionErrors walks a decoded `| json` value and reports every
// breach of docs/json.md's conventions, with its path.
func conventionErrors(path string, v any, key string) []string {
	var errs []string
	bad := func(f string) { errs = append(errs, path+": "+f) }
	switch x := v.(type) {
	case nil:
		bad("null (absent values are left out)")
	case map[string]any:
		if len(x) == 0 {
			bad("empty object (absent values are left out)")
		}
		for k, e := range x {
			if !snakeCase.MatchString(k) {
				errs = append(errs, path+"."+k+": key not snake_case")
			}
			errs = append(errs, conventionErrors(path+"."+k, e, k)...)
		}
	case []any:
		if len(x) == 0 {
			bad("empty list (absent values are left out)")
		}
		for i, e := range x {
			errs = append(errs, conventionErrors(path+"["+strconv.Itoa(i)+"]", e, key)...)
		}
	case string:
		switch {
		case x == "":
			bad("empty string (absent values are left out)")
		case strings.HasPrefix(x, "0001-01-01"):
			bad("Go zero time")
		case goDur.MatchString(x):
			bad("Go duration string " + x + " (durations are _seconds numbers)")
		case strings.HasSuffix(key, "_at") || key == "clock":
			if tm, err := time.Parse(time.RFC3339Nano, x); err != nil || !strings.HasSuffix(x, "Z") || tm.Year() < 2000 {
				bad("not an RFC 3339 UTC time: " + x)
			}
		case key == "spi" || strings.HasSuffix(key, "_cookie"):
			if !hexValue.MatchString(x) {
				bad("not 0x-prefixed lowercase hex: " + x)
			}
		}
	case float64:
		switch {
		case strings.HasSuffix(key, "_seconds") && math.Abs(x) >= 1e9:
			bad("a _seconds value of nanoseconds' size")
		case strings.HasSuffix(key, "_at"):
			bad("a time as a number")
		case x != 0 && math.Abs(x) >= 1e9 && math.Mod(x, 1e9) == 0:
			bad("looks like a nanosecond duration")
		}
		if strings.HasSuffix(key, "_seconds") && x != math.Trunc(x) && key != "pseudotime_seconds" && key != "took_seconds" {
			bad("fractional seconds where the schema says integer")
		}
	case bool:
	default:
		bad("unexpected JSON type")
	}
	return errs
}

// Check reports every breach of the conventions in out, one show
// command's `| json` output, whose "schema" must be schema.
func Check(out []byte, schema string) []string {
	var v any
	if err := json.Unmarshal(out, &v); err != nil {
		return []string{"not JSON: " + err.Error()}
	}
	errs := conventionErrors("$", v, "")
	m, _ := v.(map[string]any)
	if m["schema"] != schema {
		errs = append(errs, "$.schema: want "+schema)
	}
	if c, _ := m["command"].(string); !strings.HasPrefix(c, "show ") {
		errs = append(errs, "$.command: want the show command")
	}
	sort.Strings(errs)
	return errs
}
