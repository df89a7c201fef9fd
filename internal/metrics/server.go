package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Limits bound what scrapers may cost the daemon.
type Limits struct {
	// Timeout bounds one scrape, from request to response (promhttp
	// answers 503 past it); the sources' reads are bounded separately
	// by the collector's timeout.
	Timeout time.Duration
	// MaxInFlight is the number of scrapes served at once; more are
	// answered 503 at once.
	MaxInFlight int
}

// DefaultLimits: a scrape takes at most 5 s, two at once.
var DefaultLimits = Limits{Timeout: 5 * time.Second, MaxInFlight: 2}

// Server is a listening metrics endpoint: GET /metrics.
type Server struct {
	ln  net.Listener
	srv *http.Server
}

// Listen binds addr (host:port) now, so that a bad address or a port in
// use is a startup error, and returns a Server exposing the collectors
// on /metrics once Serve runs.
func Listen(addr string, lim Limits, logger *slog.Logger, cs ...prometheus.Collector) (*Server, error) {
	if lim.Timeout <= 0 {
		lim.Timeout = DefaultLimits.Timeout
	}
	if lim.MaxInFlight <= 0 {
		lim.MaxInFlight = DefaultLimits.MaxInFlight
	}
	reg := prometheus.NewPedanticRegistry()
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics endpoint: %w", err)
	}
	var errLog promhttp.Logger
	if logger != nil {
		errLog = slogLogger{logger}
	}
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            errLog,
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: lim.MaxInFlight,
		Timeout:             lim.Timeout,
	})
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      lim.Timeout + 5*time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    8 << 10,
	}
	if logger != nil {
		srv.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	}
	return &Server{ln: ln, srv: srv}, nil
}

// Addr is the address bound (the port chosen for port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until ctx ends, then closes the listener and the
// connections.
func (s *Server) Serve(ctx context.Context) error {
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if err := s.srv.Shutdown(sctx); err != nil {
				s.srv.Close()
			}
		case <-done:
		}
	}()
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops the server at once.
func (s *Server) Close() error { return s.srv.Close() }

type slogLogger struct{ l *slog.Logger }

func (l slogLogger) Println(v ...any) { l.l.Warn("metrics scrape: " + fmt.Sprint(v...)) }
