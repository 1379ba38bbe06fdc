// Command warngate is the warning dissemination gateway: it takes warnings
// through an HTTP API, fans them out per region, level and channel over an
// asynq queue on Redis, and records every delivery.
//
//	warngate serve          API and workers in one process
//	warngate worker         workers only, to scale out
//	warngate bench          fan-out benchmark on a real Redis
//	warngate config check   validate configuration, policy and roster
//	warngate version
//
// This is the only package that wires the others together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"warngate/config"
)

var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

const usage = `warngate: multi-channel warning dissemination gateway

usage:
  warngate serve  [--config FILE] [--listen ADDR] [--redis URL] [--no-workers]
  warngate worker [--config FILE] [--redis URL] [--metrics ADDR]
  warngate bench  [--redis URL] [--recipients N] [--naive N] [--providers | --ack | --crash | --roster]
  warngate config check [--config FILE]
  warngate user hash < password      (prints a password_hash for users:)
  warngate version

environment: WARNGATE_CONFIG, WARNGATE_LISTEN, WARNGATE_REDIS_URL, WARNGATE_PUBLIC_URL,
             WARNGATE_ADMIN_TOKEN, WARNGATE_LINK_KEY, WARNGATE_SESSION_KEY,
             WARNGATE_SIMULATOR_SECRET
`

func run(args []string, env func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(args[1:], env, stdout, stderr)
	case "worker":
		err = worker(args[1:], env, stderr)
	case "bench":
		err = bench(args[1:], env, stdout, stderr)
	case "config":
		if len(args) < 2 || args[1] != "check" {
			fmt.Fprint(stderr, "usage: warngate config check [--config FILE]\n")
			return 2
		}
		err = configCheck(args[2:], env, stdout)
	case "user":
		err = userCommand(args[1:], os.Stdin, stdout)
	case "version", "--version":
		fmt.Fprintln(stdout, "warngate", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "warngate: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "warngate %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// commonFlags are the flags every running command takes.
type commonFlags struct {
	config, listen, redis string
}

func (c *commonFlags) register(fs *flag.FlagSet, env func(string) string, listen bool) {
	fs.StringVar(&c.config, "config", env("WARNGATE_CONFIG"), "YAML configuration file (env WARNGATE_CONFIG)")
	if listen {
		fs.StringVar(&c.listen, "listen", "", "HTTP address, default 127.0.0.1:8080 (env WARNGATE_LISTEN)")
	}
	fs.StringVar(&c.redis, "redis", "", "redis://host:port/db; empty runs the embedded in-memory server (env WARNGATE_REDIS_URL)")
}

// load reads the configuration with the flags over the environment over
// the file, and runs preflight for r.
func (c *commonFlags) load(env func(string) string, r role) (*config.Config, *world, error) {
	cfg, err := config.Load(c.config, c.env(env))
	if cfg == nil {
		return nil, nil, err
	}
	w, err := preflight(cfg, r, err)
	if err != nil {
		return nil, nil, err
	}
	return cfg, w, nil
}

// env gives the flags the environment's place, and a --listen without
// WARNGATE_PUBLIC_URL the public URL it implies.
func (c *commonFlags) env(env func(string) string) func(string) string {
	return func(k string) string {
		switch {
		case k == "WARNGATE_LISTEN" && c.listen != "":
			return c.listen
		case k == "WARNGATE_REDIS_URL" && c.redis != "":
			return c.redis
		case k == "WARNGATE_PUBLIC_URL" && c.listen != "" && env(k) == "":
			return "http://" + c.listen
		}
		return env(k)
	}
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func serve(args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs, env, true)
	noWorkers := fs.Bool("no-workers", false, "serve the API only; run workers with 'warngate worker'")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, w, err := cf.load(env, roleServe)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	generated := false
	if cfg.AdminToken == "" { // the embedded mode: preflight requires one otherwise
		cfg.AdminToken = config.Secret(randomToken())
		generated = true
	}
	// Listen first: fake providers take loopback ports of their own.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	defer ln.Close()
	a, err := newApp(cfg, w, log)
	if err != nil {
		return err
	}
	defer a.close()
	ctx, cancel := signalContext()
	defer cancel()
	if cfg.Embedded() {
		banner(stdout, cfg, generated)
	} else {
		log.Info("warngate serving", "listen", ln.Addr().String(), "redis", cfg.Redis.Redacted(), "workers", !*noWorkers)
	}

	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second}
	var wg sync.WaitGroup
	workerErr := make(chan error, 1)
	if !*noWorkers {
		if err := a.attachSelfReporting(); err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.dispatcher.Run(ctx); err != nil {
				workerErr <- err
				cancel()
			}
		}()
	}
	httpErr := make(chan error, 1)
	go func() { httpErr <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err := <-httpErr:
		cancel()
		wg.Wait()
		return err
	}
	log.Info("shutting down: finishing running batches")
	stopHTTP(srv)
	wg.Wait()
	select {
	case err := <-workerErr:
		return err
	default:
	}
	return nil
}

// stopHTTP stops srv as serve does: the requests in flight (a provider's
// last pushes, a duty officer's confirmation) finish, 10 s at most, before
// what they use (Redis) is closed under them.
func stopHTTP(srv *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if srv.Shutdown(ctx) != nil {
		srv.Close()
	}
}

func banner(w io.Writer, cfg *config.Config, generated bool) {
	fmt.Fprintf(w, `
==========================================================================
  warngate — EMBEDDED DEMO MODE (内存演示模式)
  State lives in memory and is LOST when this process stops.
  Messages go to built-in simulators: nobody is really notified.
  数据仅保存在内存中，进程退出即丢失；消息只发往内置模拟器。
  For a real deployment set WARNGATE_REDIS_URL (or --redis).

  Open:        %s/
  API:         %s/api/v1/warnings
`, cfg.PublicURL, cfg.PublicURL)
	if generated {
		fmt.Fprintf(w, "  Admin token: %s   (generated; set WARNGATE_ADMIN_TOKEN to choose)\n", string(cfg.AdminToken))
	} else {
		fmt.Fprintf(w, "  Admin token: from WARNGATE_ADMIN_TOKEN / config\n")
	}
	if us := demoUsers(cfg); len(us) > 0 {
		fmt.Fprintf(w, "  Console:     %s/console/   (demo users; passwords generated)\n", cfg.PublicURL)
		for _, u := range us {
			scope := "全市"
			if u.Division != "" {
				scope = u.Division
			}
			fmt.Fprintf(w, "               %-8s %-13s %s, %s, %s\n", u.Name, u.Password, u.DisplayName, u.Roles[0], scope)
		}
	}
	fmt.Fprint(w, "==========================================================================\n\n")
}

func worker(args []string, env func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs, env, false)
	metricsAddr := fs.String("metrics", "127.0.0.1:9101", "address serving /metrics and /healthz for this worker; empty for none")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, w, err := cf.load(env, roleWorker)
	if err != nil {
		return err
	}
	if cfg.Embedded() {
		return errors.New("a worker needs the Redis its API uses: set WARNGATE_REDIS_URL or --redis (the embedded mode runs workers inside 'warngate serve')")
	}
	log := newLogger(cfg.Log, stderr)
	a, err := newApp(cfg, w, log)
	if err != nil {
		return err
	}
	defer a.close()
	ctx, cancel := signalContext()
	defer cancel()
	if *metricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", metricsHandler(a))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, `{"status":"ok"}`) })
		srv := &http.Server{Addr: *metricsAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics listener", "err", err)
			}
		}()
		defer srv.Close()
	}
	log.Info("warngate worker running", "redis", cfg.Redis.Redacted())
	if err := a.attachSelfReporting(); err != nil {
		return err
	}
	return a.dispatcher.Run(ctx)
}

// configCheck runs every check serve runs before it starts, and reports
// every problem at once; nothing is sent, and Redis is not needed.
func configCheck(args []string, env func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	path := fs.String("config", env("WARNGATE_CONFIG"), "YAML configuration file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*path, env)
	if cfg == nil {
		return err
	}
	if _, err := preflight(cfg, roleServe, err); err != nil {
		return err
	}
	if cfg.SimulatorOn() {
		fmt.Fprintln(stdout, "configuration OK; the simulator is on: channels without a provider notify nobody")
		return nil
	}
	fmt.Fprintln(stdout, "configuration OK")
	return nil
}
