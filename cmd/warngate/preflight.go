package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"

	"warngate/config"
	"warngate/ledger"
	"warngate/policy"
	"warngate/region"
	"warngate/warning"
)

// role is what a process runs: the API, workers, or both.
type role int

const (
	// roleServe runs the API (and, unless --no-workers, workers).
	roleServe role = iota
	// roleWorker runs workers only: it needs no admin token.
	roleWorker
)

// world is what a configuration names beyond itself.
type world struct {
	tree       *region.Tree
	roster     region.Roster
	policy     *policy.Policy
	checklists *policy.Checklists
}

// preflight runs every check of a configuration that needs neither Redis
// nor a provider's answer, and reports every problem at once, each on its
// line of the file where it has one: loadErr (what config.Load found), the
// secrets a real Redis requires, the division tree, roster, policy and
// checklists, every provider account built as newApp builds it, and that
// every channel the policy sends on has a provider or the simulator.
// serve, worker and config check all run it, so that a check added here is
// made by each; it returns the world it loaded for newApp.
func preflight(cfg *config.Config, r role, loadErr error) (*world, error) {
	errs := []error{loadErr}
	if !cfg.Embedded() {
		if r == roleServe && cfg.AdminToken == "" {
			errs = append(errs, errors.New("admin_token: required with a real Redis, so that the API is not open to anyone; set WARNGATE_ADMIN_TOKEN or admin_token_file"))
		}
		if cfg.LinkKey == "" {
			errs = append(errs, errors.New("link_key: required with a real Redis, so that the links the workers send open on every API process; set WARNGATE_LINK_KEY or link_key_file"))
		}
		if cfg.SimulatorOn() && cfg.Simulator.Secret == "" {
			errs = append(errs, errors.New("simulator.secret: required while the simulator is on with a real Redis, so that API and worker processes agree on its reports; set WARNGATE_SIMULATOR_SECRET or simulator.secret"))
		}
	}
	tree, roster, pol, checklists, err := loadWorld(cfg)
	errs = append(errs, err)

	// Each provider account as newApp makes it: secrets read from their
	// files and the environment, every adapter's settings checked. Nothing
	// is sent. Adapters keep a Redis client for later (WeChat's token
	// cache); this one is never dialled.
	idle := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer idle.Close()
	if p, err := buildProviders(cfg, idle, ledger.New(idle, cfg.Redis.Prefix, nil), slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		errs = append(errs, err)
	} else {
		p.close()
	}
	if pol != nil {
		errs = append(errs, unprovided(cfg, pol))
	}
	if err := cfg.Problems(errs...); err != nil {
		return nil, err
	}
	return &world{tree: tree, roster: roster, policy: pol, checklists: checklists}, nil
}

// unprovided names every channel the policy sends on that has neither a
// provider account nor the simulator, with the rules that send on it: its
// batches would wait for a worker that never comes.
func unprovided(cfg *config.Config, pol *policy.Policy) error {
	if cfg.SimulatorOn() {
		return nil
	}
	have := map[warning.Channel]bool{}
	for _, p := range cfg.Providers {
		have[warning.Channel(p.Channel)] = true
	}
	rules := map[warning.Channel][]string{}
	for i, r := range pol.Rules {
		var used []warning.Channel
		for _, chs := range r.Send {
			used = append(used, chs...)
		}
		if r.CallListDeadline > 0 {
			used = append(used, warning.SMS) // households left are texted to the village officer
		}
		for _, ch := range used {
			name := fmt.Sprintf("%d (%s)", i+1, r.Name)
			if !have[ch] && !slices.Contains(rules[ch], name) {
				rules[ch] = append(rules[ch], name)
			}
		}
	}
	var errs []error
	for _, ch := range warning.Channels {
		if len(rules[ch]) == 0 {
			continue
		}
		what := "rule " + rules[ch][0] + " sends"
		if len(rules[ch]) > 1 {
			what = "rules " + strings.Join(rules[ch], ", ") + " send"
		}
		errs = append(errs, fmt.Errorf("providers: no account for channel %s, and policy %s on it: add one (channel: %s), or turn the simulator on for a trial (simulator.enabled: true; nobody is notified)", ch, what, ch))
	}
	return errors.Join(errs...)
}
