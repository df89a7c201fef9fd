package node

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/version"
)

// proves: groundwork (issue 15: nothing blocks forever after Run returns:
// every exported method of *Node, called with a context that never ends,
// returns within a second, and the calls that need the node's goroutine
// say ErrStopped)
func TestEveryMethodReturnsAfterRun(t *testing.T) {
	ksAddr := netip.MustParseAddr("127.0.0.14")
	n, err := New(Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current),
		KS: []ks.GroupConfig{ksGroup(t, ksAddr)},
		GM: []GMGroup{{Name: "OTHER", ID: 99, Servers: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.15:848")}}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error)
	go func() { ran <- n.Run(ctx) }()
	if err := n.Do(ctx, func() {}); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-ran

	v := reflect.ValueOf(n)
	typ := v.Type()
	for i := 0; i < typ.NumMethod(); i++ {
		m := typ.Method(i)
		if m.Name == "Run" {
			continue // once per node
		}
		args := []reflect.Value{v}
		for j := 1; j < m.Type.NumIn(); j++ {
			in := m.Type.In(j)
			switch {
			case in == reflect.TypeFor[context.Context]():
				args = append(args, reflect.ValueOf(context.Background()))
			case in.Kind() == reflect.Func:
				args = append(args, reflect.MakeFunc(in, func([]reflect.Value) []reflect.Value {
					t.Errorf("%s: ran a function after Run returned", m.Name)
					return nil
				}))
			case in == reflect.TypeFor[string]():
				args = append(args, reflect.ValueOf("GETVPN"))
			default:
				args = append(args, reflect.Zero(in))
			}
		}
		done := make(chan []reflect.Value, 1)
		go func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s panicked after Run returned: %v", m.Name, r)
					done <- nil
				}
			}()
			done <- m.Func.Call(args)
		}()
		select {
		case out := <-done:
			if m.Type.NumIn() > 1 && m.Type.In(1) == reflect.TypeFor[context.Context]() {
				last := out[len(out)-1].Interface()
				if err, _ := last.(error); !errors.Is(err, ErrStopped) {
					t.Errorf("%s after Run returned: %v, want ErrStopped", m.Name, last)
				}
			}
		case <-time.After(time.Second):
			t.Errorf("%s blocks after Run returned", m.Name)
		}
	}
}

// proves: groundwork (issue 15: a function Do handed to the node's
// goroutine is always waited for, even when the caller's context ends
// meanwhile: what it writes is the caller's once Do returns)
func TestDoWaitsForAnAcceptedFunction(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := start(t, ctx, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.16:0")}, IKE: ikeCfg("k", version.Current),
		GM: []GMGroup{{Name: "OTHER", ID: 99, Servers: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.17:848")}}}})
	dctx, dcancel := context.WithCancel(ctx)
	wrote := 0
	err := n.Do(dctx, func() {
		dcancel()
		time.Sleep(20 * time.Millisecond)
		wrote = 1
	})
	if err != nil || wrote != 1 {
		t.Fatalf("Do returned %v with the function's write %d", err, wrote)
	}
}
