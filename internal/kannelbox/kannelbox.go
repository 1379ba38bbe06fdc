// Package kannelbox runs a real Kannel on loopback with its fakesmsc
// SMS-centre simulator: bearerbox, one fake SMSC and one or more smsboxes,
// on free ports. Messages sent through smsbox's sendsms interface reach fakesmsc,
// which answers at once, so Kannel sends its delivery reports to each
// message's dlr-url; lines given to Box.SendMO reach fakesmsc as messages
// from phones, which smsbox forwards to the gateway's reply callback.
//
// Tests and the bench use it; Kannel comes from the Debian packages kannel
// and kannel-extras.
package kannelbox

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Where the Debian packages install Kannel's programs.
const (
	Bearerbox = "/usr/sbin/bearerbox"
	Smsbox    = "/usr/sbin/smsbox"
	Fakesmsc  = "/usr/lib/kannel/test/fakesmsc" // from kannel-extras
)

// InstallCommand installs Kannel's programs on Debian and Ubuntu.
const InstallCommand = "apt-get install -y kannel kannel-extras"

// Username is the box's sendsms user and From its service number (Kannel's
// global-sender).
const (
	Username = "warngate"
	From     = "12379"
)

// ReportCallbacks is how many callbacks each smsbox makes at once
// (max-pending-requests): delivery reports and replies from phones beyond
// it wait in smsbox's queue.
const ReportCallbacks = 64

// DefaultStartTimeout bounds each wait of Start for a program's port.
const DefaultStartTimeout = 20 * time.Second

//go:embed kannel.conf.tmpl
var confTemplate string

// Installed returns nil when bearerbox, smsbox and fakesmsc are present,
// or an error naming the first one missing and how to install it.
func Installed() error {
	for _, bin := range []string{Bearerbox, Smsbox, Fakesmsc} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("kannelbox: %s is missing: install Kannel with `%s`", bin, InstallCommand)
		}
	}
	return nil
}

// RequiredEnv, when set (CI sets it), makes Require fail a test where
// Kannel is not installed instead of skipping it.
const RequiredEnv = "WARNGATE_TEST_KANNEL_REQUIRED"

// Require skips a test where Kannel is not installed, and fails it where
// RequiredEnv is set. t is the test's *testing.T (or B).
func Require(t interface {
	Helper()
	Fatalf(format string, args ...any)
	Skip(args ...any)
}) {
	t.Helper()
	if err := Installed(); err != nil {
		if os.Getenv(RequiredEnv) != "" {
			t.Fatalf("%v (%s is set)", err, RequiredEnv)
		}
		t.Skip(err)
	}
}

// Options configure a box.
type Options struct {
	// Dir is an existing folder for the configuration and the logs.
	Dir string
	// MOURL is where smsbox sends replies from phones: the gateway's reply
	// callback with its key, e.g.
	// http://127.0.0.1:8080/callbacks/kannel/mo?key=…. Kannel adds from,
	// to, text, ts, smsc, coding and charset.
	MOURL string
	// Password is the sendsms user's password. Empty picks a random one.
	Password string
	// StartTimeout bounds each wait for a program's port. Zero means
	// DefaultStartTimeout.
	StartTimeout time.Duration
	// Smsboxes is how many smsboxes connect to bearerbox, each with its
	// own sendsms port; bearerbox hands each delivery report to one of
	// them, so that several make the callbacks of many reports at once, as
	// a busy Kannel is run. Zero means one.
	Smsboxes int
	// Refuse, when set, is a regular expression (POSIX extended, as
	// Kannel reads it) of numbers the sendsms user may not text: the
	// user's black-list-regex. Kannel then refuses them, as a carrier's
	// Kannel refuses numbers it is told to.
	Refuse string
}

// Box is a running Kannel. Close stops it.
type Box struct {
	// Username, Password and From are what an adapter sends with: the
	// sendsms user and the service number.
	Username, Password, From string
	// Dir holds kannel.conf and the logs.
	Dir string

	adminPort, boxPort, smscPort int
	sendsmsPorts                 []int // one per smsbox
	confs                        []string
	startTimeout                 time.Duration

	procs     []*proc
	mo        io.WriteCloser
	moMu      sync.Mutex
	closeOnce sync.Once
	closeErr  error
}

// Start writes kannel.conf into o.Dir and starts bearerbox, then fakesmsc
// and smsbox once bearerbox listens, and returns once smsbox listens. ctx
// bounds the start only; the box runs until Close. On an error nothing is
// left running, and the error carries the end of the failing program's log.
func Start(ctx context.Context, o Options) (*Box, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if err := Installed(); err != nil {
		return nil, err
	}
	if o.Password == "" {
		o.Password = randomHex(12)
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	if o.Smsboxes == 0 {
		o.Smsboxes = 1
	}
	ports, err := freePorts(3 + o.Smsboxes)
	if err != nil {
		return nil, err
	}
	b := &Box{Username: Username, Password: o.Password, From: From, Dir: o.Dir,
		adminPort: ports[0], boxPort: ports[1], smscPort: ports[2], sendsmsPorts: ports[3:]}
	var confs []string
	for i := range o.Smsboxes {
		conf := filepath.Join(o.Dir, "kannel.conf")
		if i > 0 {
			conf = filepath.Join(o.Dir, fmt.Sprintf("kannel-%s.conf", smsboxName(i)))
		}
		if err := os.WriteFile(conf, []byte(b.config(i, o.MOURL, o.Refuse)), 0o600); err != nil {
			return nil, fmt.Errorf("kannelbox: write the configuration: %w", err)
		}
		confs = append(confs, conf)
	}
	b.confs, b.startTimeout = confs, o.StartTimeout
	if err := b.startAll(ctx, confs, o.StartTimeout); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func (o Options) check() error {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("kannelbox: Options.Dir is required: a folder for kannel.conf and the logs"))
	} else if st, err := os.Stat(o.Dir); err != nil || !st.IsDir() {
		errs = append(errs, fmt.Errorf("kannelbox: Options.Dir %s is not a folder: create it first", o.Dir))
	}
	u, err := url.Parse(o.MOURL)
	switch {
	case o.MOURL == "":
		errs = append(errs, errors.New("kannelbox: Options.MOURL is required: the gateway's reply callback, e.g. http://127.0.0.1:8080/callbacks/kannel/mo?key=…"))
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		errs = append(errs, fmt.Errorf("kannelbox: Options.MOURL %q: use an absolute http:// address such as http://127.0.0.1:8080/callbacks/kannel/mo?key=…", o.MOURL))
	case strings.ContainsAny(o.MOURL, "%\" \t\r\n"):
		errs = append(errs, fmt.Errorf("kannelbox: Options.MOURL %q must not contain %%, quotes or spaces: Kannel reads %%X as its own codes; use a key of letters and digits", o.MOURL))
	}
	if strings.ContainsAny(o.Refuse, "\"\r\n") {
		errs = append(errs, errors.New("kannelbox: Options.Refuse must not contain quotes or line breaks"))
	}
	if strings.ContainsAny(o.Password, "\" \t\r\n") {
		errs = append(errs, errors.New("kannelbox: Options.Password must not contain quotes or spaces"))
	}
	if o.Smsboxes < 0 || o.Smsboxes > 8 {
		errs = append(errs, fmt.Errorf("kannelbox: Options.Smsboxes %d: use 1 to 8, or zero for one", o.Smsboxes))
	}
	if o.StartTimeout < 0 {
		errs = append(errs, fmt.Errorf("kannelbox: Options.StartTimeout %s is negative: use a duration such as 20s, or zero for the default", o.StartTimeout))
	}
	return errors.Join(errs...)
}

// smsboxName names the i-th smsbox's logs: smsbox, smsbox2, …
func smsboxName(i int) string {
	if i == 0 {
		return "smsbox"
	}
	return "smsbox" + strconv.Itoa(i+1)
}

// config fills the template for the i-th smsbox.
func (b *Box) config(i int, moURL, refuse string) string {
	extra := ""
	if refuse != "" {
		extra = "black-list-regex = \"" + refuse + "\""
	}
	switch {
	case !strings.Contains(moURL, "?"):
		moURL += "?"
	case !strings.HasSuffix(moURL, "?") && !strings.HasSuffix(moURL, "&"):
		moURL += "&"
	}
	return strings.NewReplacer(
		"@DIR@", b.Dir, "@MO_URL@", moURL, "@USERNAME@", b.Username, "@PASSWORD@", b.Password, "@FROM@", b.From,
		"@STATUS_PASSWORD@", statusPassword, "@ADMIN_PASSWORD@", adminPassword, "@ADMIN_PORT@", strconv.Itoa(b.adminPort), "@BOX_PORT@", strconv.Itoa(b.boxPort),
		"@SMSC_PORT@", strconv.Itoa(b.smscPort), "@SENDSMS_PORT@", strconv.Itoa(b.sendsmsPorts[i]), "@SENDSMS_USER_EXTRA@", extra,
		"@SMSBOX@", smsboxName(i), "@REPORT_CALLBACKS@", strconv.Itoa(ReportCallbacks),
	).Replace(confTemplate)
}

// startAll starts the programs in order, each once the one it connects to
// listens: bearerbox with confs[0], fakesmsc, then an smsbox per conf.
func (b *Box) startAll(ctx context.Context, confs []string, timeout time.Duration) error {
	bearerbox, err := b.start("bearerbox", false, Bearerbox, "-v", "1", confs[0])
	if err != nil {
		return err
	}
	if err := b.waitPort(ctx, bearerbox, b.smscPort, "its fake SMSC port", timeout); err != nil {
		return err
	}
	// fakesmsc sends every line of its standard input as a message from a phone.
	fake, err := b.start("fakesmsc", true, Fakesmsc, "-H", "127.0.0.1", "-r", strconv.Itoa(b.smscPort), "-m", "1000000")
	if err != nil {
		return err
	}
	b.moMu.Lock()
	b.mo = fake.stdin
	b.moMu.Unlock()
	for i, conf := range confs {
		smsbox, err := b.start(smsboxName(i), false, Smsbox, "-v", "1", conf)
		if err != nil {
			return err
		}
		if err := b.waitPort(ctx, smsbox, b.sendsmsPorts[i], "its sendsms port", timeout); err != nil {
			return err
		}
	}
	// Until fakesmsc is connected, sendsms answers "3: Queued for later
	// delivery" and the messages wait for bearerbox's resend timer; an
	// smsbox opens its sendsms port before it reaches bearerbox.
	return b.waitOnline(ctx, bearerbox, len(confs), timeout)
}

// statusPassword opens bearerbox's status page, adminPassword its
// commands (Admin); it listens on loopback only.
const (
	statusPassword = "statuspw"
	adminPassword  = "adminpw"
)

// waitOnline waits until bearerbox's status page shows the fake SMSC
// online and smsboxes connected.
func (b *Box) waitOnline(ctx context.Context, bearerbox *proc, smsboxes int, timeout time.Duration) error {
	statusURL := fmt.Sprintf("http://127.0.0.1:%d/status.txt?password=%s", b.adminPort, statusPassword)
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		if resp, err := hc.Get(statusURL); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(body), "(online") && strings.Count(string(body), "smsbox:") == smsboxes {
				return nil
			}
		}
		if bearerbox.exited() {
			return fmt.Errorf("kannelbox: bearerbox exited before the fake SMSC connected:\n%s", b.Logs())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kannelbox: the fake SMSC was not online, or not every smsbox connected, on bearerbox's status page within %s:\n%s", timeout, b.Logs())
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Admin sends bearerbox an administration command (suspend, resume, …)
// through its admin port, as an operator does with
// /cgi-bin/<command>?password=….
func (b *Box) Admin(ctx context.Context, command string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/%s?password=%s", b.adminPort, url.PathEscape(command), adminPassword), nil)
	if err != nil {
		return fmt.Errorf("kannelbox: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("kannelbox: %s: %w", command, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("kannelbox: %s: %s: %s", command, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// SendSMSURL is the first smsbox's sendsms address.
func (b *Box) SendSMSURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/sendsms", b.sendsmsPorts[0])
}

// NoRoute is an smsc-id for which bearerbox has no SMS centre: it refuses
// a message sent for it for good.
const NoRoute = "NOROUTE"

// BoxAddress is bearerbox's smsbox-port, where boxes (smsbox, or the
// gateway's box transport) connect.
func (b *Box) BoxAddress() string { return fmt.Sprintf("127.0.0.1:%d", b.boxPort) }

// SendMO hands fakesmsc one message from a phone, in its line format
// "sender receiver type text": type text takes the rest of the line as it
// is, e.g. "13800000001 12379 text 1"; type ucs2 takes the UCS-2 bytes
// URL-escaped, e.g. "13800000002 12379 ucs2 %65%36%52%30" for 收到. A line
// has at most 254 bytes. fakesmsc may hold a line until it reads the next
// one when both come at once: send the next after the first has arrived.
func (b *Box) SendMO(line string) error {
	if strings.ContainsAny(line, "\r\n") || len(line)+1 > 255 {
		return fmt.Errorf("kannelbox: MO line %q: give one line of at most 254 bytes", line)
	}
	if len(strings.Fields(line)) < 4 {
		return fmt.Errorf("kannelbox: MO line %q: want \"sender receiver type text\", e.g. \"13800000001 12379 text 1\"", line)
	}
	b.moMu.Lock()
	defer b.moMu.Unlock()
	if b.mo == nil {
		return errors.New("kannelbox: fakesmsc is not running")
	}
	if _, err := io.WriteString(b.mo, line+"\n"); err != nil {
		return fmt.Errorf("kannelbox: hand the MO to fakesmsc: %w (has it exited? see Logs)", err)
	}
	return nil
}

// CPU returns the processor time the box's programs have used so far, as
// Linux counts it in /proc (zero where there is no /proc): for benches,
// which weigh what Kannel costs per message.
func (b *Box) CPU() time.Duration {
	var total time.Duration
	for _, p := range b.procs {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
		if err != nil {
			continue
		}
		// The fields after the program's name, which is in parentheses:
		// utime and stime are the 12th and 13th, in clock ticks.
		i := strings.LastIndexByte(string(stat), ')')
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 13 {
			continue
		}
		for _, v := range f[11:13] {
			n, _ := strconv.ParseInt(v, 10, 64)
			total += time.Duration(n) * time.Second / clockTicks
		}
	}
	return total
}

// clockTicks is Linux's USER_HZ, the unit of /proc's times: 100 on every
// platform Kannel is packaged for.
const clockTicks = 100

// Logs returns the end of each program's output and of smsbox's access
// log, for a failure message.
func (b *Box) Logs() string {
	var sb strings.Builder
	names := []string{"bearerbox.out"}
	for i := range b.sendsmsPorts {
		names = append(names, smsboxName(i)+".out", smsboxName(i)+"-access.log")
	}
	for _, name := range append(names, "fakesmsc.out") {
		if tail := logTail(filepath.Join(b.Dir, name), 60); tail != "" {
			fmt.Fprintf(&sb, "--- %s:\n%s\n", name, tail)
		}
	}
	return sb.String()
}

// AccessLog returns bearerbox's access log: a line for each message
// handed to an SMS centre ("Sent SMS [SMSC:FAKE] … [to:<number>] …"),
// refused ("FAILED Send SMS …", "EXPIRED SMS …") or reported ("Receive DLR …").
func (b *Box) AccessLog() (string, error) {
	out, err := os.ReadFile(filepath.Join(b.Dir, "access.log"))
	if err != nil {
		return "", fmt.Errorf("kannelbox: %w", err)
	}
	return string(out), nil
}

// Restart kills every program, as a crash of Kannel's machine would, and
// starts them again on the same ports: what was connected to bearerbox
// (smsbox, a gateway's box connection) loses its connection, and delivery
// reports bearerbox kept in memory (dlr-storage = internal) are gone.
// It returns once the fake SMSC and the smsboxes are back. Not to be
// called after Close.
func (b *Box) Restart(ctx context.Context) error {
	if err := b.stopAll(); err != nil {
		return err
	}
	return b.startAll(ctx, b.confs, b.startTimeout)
}

// Close stops the programs, the smsboxes first, and waits for them. It may be
// called more than once.
func (b *Box) Close() error {
	b.closeOnce.Do(func() { b.closeErr = b.stopAll() })
	return b.closeErr
}

// stopAll closes fakesmsc's input and stops the programs in the reverse
// of their start, waiting for each.
func (b *Box) stopAll() error {
	b.moMu.Lock()
	if b.mo != nil {
		b.mo.Close()
		b.mo = nil
	}
	b.moMu.Unlock()
	var errs []error
	for i := len(b.procs) - 1; i >= 0; i-- {
		errs = append(errs, b.procs[i].stop())
	}
	b.procs = nil
	return errors.Join(errs...)
}

// proc is one running program with its output in Dir/name.out.
type proc struct {
	name  string
	cmd   *exec.Cmd
	out   *os.File
	stdin io.WriteCloser
	done  chan struct{}
}

func (b *Box) start(name string, withStdin bool, bin string, args ...string) (*proc, error) {
	out, err := os.Create(filepath.Join(b.Dir, name+".out"))
	if err != nil {
		return nil, fmt.Errorf("kannelbox: %w", err)
	}
	p := &proc{name: name, cmd: exec.Command(bin, args...), out: out, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if withStdin {
		if p.stdin, err = p.cmd.StdinPipe(); err != nil {
			out.Close()
			return nil, fmt.Errorf("kannelbox: %s: %w", name, err)
		}
	}
	if err := p.cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("kannelbox: start %s: %w", bin, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	b.procs = append(b.procs, p)
	return p, nil
}

func (p *proc) stop() error {
	var err error
	if kerr := p.cmd.Process.Kill(); kerr != nil && !errors.Is(kerr, os.ErrProcessDone) {
		err = fmt.Errorf("kannelbox: stop %s (pid %d): %w", p.name, p.cmd.Process.Pid, kerr)
	}
	<-p.done
	p.out.Close()
	return err
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitPort waits until p listens on port, failing early if p exits.
func (b *Box) waitPort(ctx context.Context, p *proc, port int, what string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if p.exited() {
			return fmt.Errorf("kannelbox: %s exited before opening %s %s (%s); its output:\n%s",
				p.name, what, addr, p.cmd.ProcessState, logTail(p.out.Name(), 30))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kannelbox: %s did not open %s %s in %s (is the machine overloaded, or the port taken?); its output:\n%s",
				p.name, what, addr, timeout, logTail(p.out.Name(), 30))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// freePorts returns n distinct loopback ports free a moment ago.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("kannelbox: find a free loopback port: %w", err)
		}
		defer ln.Close() // held until all are chosen, so that they differ
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
