package testnet

import "sync"

// Writes is an io.Writer that records each Write it is given, for tests
// of what is written with how many writes (a log's lines batched or not);
// safe for concurrent writers.
type Writes struct {
	mu   sync.Mutex
	each []string
}

func (w *Writes) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.each = append(w.each, string(p))
	return len(p), nil
}

// Each returns what each Write held so far, in order.
func (w *Writes) Each() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.each...)
}

// Reset forgets the writes recorded so far.
func (w *Writes) Reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.each = nil
}
