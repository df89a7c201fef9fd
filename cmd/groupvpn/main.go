// Command groupvpn is the single binary of the groupvpn suite; see
// `groupvpn help` and README.md.
package main

import (
	"os"

	"github.com/groupvpn/groupvpn/internal/app"
)

func main() {
	os.Exit(app.Main(&app.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}, app.Args(os.Args)))
}
