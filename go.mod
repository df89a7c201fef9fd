module github.com/groupvpn/groupvpn

go 1.26.8

require (
	go.etcd.io/bbolt v1.5.0
	golang.org/x/term v0.47.0
)

require (
	golang.org/x/sys v0.49.0
	golang.zx2c4.com/wireguard v0.0.0-20260522210424-ecfc5a8d5446
)

require (
	golang.org/x/net v0.39.0 // indirect
	golang.zx2c4.com/wintun v0.0.0-20230126152724-0fa3db229ce2 // indirect
)
