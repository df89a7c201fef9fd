// Package system holds the system tests of the group `ike` (SPEC D1-D6):
// srcmstr, tmd, iked and isakmpd as real processes of the groupvpn binary,
// in network namespaces, driven by the operator's verbs (startsrc, stopsrc,
// refresh, lssrc) and observed with the operator's tools (groupvpn cli,
// lssrc -l, ss -lun). It has no code of its own.
package system
