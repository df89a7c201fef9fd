module github.com/groupvpn/groupvpn

go 1.26.8
