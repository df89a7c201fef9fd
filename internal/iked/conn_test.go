package iked_test

import (
	"github.com/groupvpn/groupvpn/internal/iked"
	"github.com/groupvpn/groupvpn/internal/node"
)

// A daemon started with its group runs its node over iked's virtual
// sockets unchanged (SPEC D1): *iked.Conn is a node.PacketConn and sends
// multicast rekeys with options of its own.
var (
	_ node.PacketConn = (*iked.Conn)(nil)
	_ interface {
		SetMulticastOptions(ifName string, ttl int) error
	} = (*iked.Conn)(nil)
)
