package sipvoice_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"warngate/channels/sipvoice"
)

// The official's phone in these tests is baresip, a SIP user agent from
// Debian (package baresip-core), run headless on loopback: it answers by
// itself or not at all, takes commands on its ctrl_tcp socket (press a
// key, hang up) and reports its calls' events there, and records what it
// heard (module sndfile).

// baresipModules is where Debian installs baresip's modules.
const baresipModules = "/usr/lib/baresip/modules"

// needVoiceTools skips the test when baresip or espeak-ng is missing,
// unless WARNGATE_TEST_VOICE_REQUIRED is set: then it fails.
func needVoiceTools(t *testing.T) {
	t.Helper()
	var missing []string
	for _, bin := range []string{"baresip", "espeak-ng"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if _, err := os.Stat(filepath.Join(baresipModules, "ctrl_tcp.so")); err != nil {
		missing = append(missing, baresipModules+"/ctrl_tcp.so")
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("%s missing: apt-get install baresip-core espeak-ng", strings.Join(missing, ", "))
	if os.Getenv("WARNGATE_TEST_VOICE_REQUIRED") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// freePort returns a loopback port free for UDP and TCP whose next port is
// free too (baresip listens for SIP over TLS there).
func freePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		ok := true
		for _, p := range []int{port, port + 1} {
			for _, network := range []string{"tcp", "udp"} {
				addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
				var c io.Closer
				if network == "tcp" {
					c, err = net.Listen(network, addr)
				} else {
					c, err = net.ListenPacket(network, addr)
				}
				if err != nil {
					ok = false
					continue
				}
				c.Close()
			}
		}
		if ok {
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// phone is one baresip with one account.
type phone struct {
	t      *testing.T
	number string
	dir    string
	addr   string // its SIP address, the trunk the gateway calls

	mu     sync.Mutex
	conn   net.Conn
	events []event
	seen   chan struct{} // signalled on every event
}

type event struct {
	Type  string `json:"type"`
	Param string `json:"param"`
}

// startPhone runs baresip as the phone number; answer says whether it
// answers by itself.
func startPhone(t *testing.T, number string, answer bool) *phone {
	t.Helper()
	dir := t.TempDir()
	sipPort, ctrlPort := freePort(t), freePort(t)
	mode := "manual"
	if answer {
		mode = "auto"
	}
	silence := sipvoice.PCM{Rate: 8000, Samples: make([]int16, 8000*120)}
	os.WriteFile(filepath.Join(dir, "silence.wav"), silence.WAV(), 0o644)
	os.Mkdir(filepath.Join(dir, "rec"), 0o755)
	config := strings.Join([]string{
		"poll_method epoll",
		"sip_listen 127.0.0.1:" + strconv.Itoa(sipPort),
		"sip_trans_def udp",
		"audio_source aufile," + filepath.Join(dir, "silence.wav"),
		"module_path " + baresipModules,
		"module g711.so",
		"module aufile.so",
		"module sndfile.so",
		"snd_path " + filepath.Join(dir, "rec"),
		"module account.so",
		"module_app menu.so",
		"module_app ctrl_tcp.so",
		"ctrl_tcp_listen 127.0.0.1:" + strconv.Itoa(ctrlPort),
	}, "\n") + "\n"
	os.WriteFile(filepath.Join(dir, "config"), []byte(config), 0o644)
	account := fmt.Sprintf("<sip:%s@127.0.0.1:%d>;regint=0;answermode=%s\n", number, sipPort, mode)
	os.WriteFile(filepath.Join(dir, "accounts"), []byte(account), 0o644)

	cmd := exec.Command("baresip", "-f", dir)
	out, _ := os.Create(filepath.Join(dir, "baresip.log"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		out.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "baresip.log"))
			t.Logf("baresip %s:\n%s", number, tail(string(b), 3000))
		}
	})
	p := &phone{t: t, number: number, dir: dir, addr: "127.0.0.1:" + strconv.Itoa(sipPort), seen: make(chan struct{}, 1)}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(ctrlPort))
		if err == nil {
			p.conn = c
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("baresip did not start: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() { p.conn.Close() })
	go p.read()
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// read takes baresip's netstrings: events and answers to commands.
func (p *phone) read() {
	r := bufio.NewReader(p.conn)
	for {
		size, err := r.ReadString(':')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSuffix(size, ":"))
		if err != nil {
			return
		}
		msg := make([]byte, n+1) // and the trailing comma
		if _, err := io.ReadFull(r, msg); err != nil {
			return
		}
		var e struct {
			Event bool `json:"event"`
			event
		}
		if json.Unmarshal(msg[:n], &e) == nil && e.Event {
			p.mu.Lock()
			p.events = append(p.events, e.event)
			p.mu.Unlock()
			select {
			case p.seen <- struct{}{}:
			default:
			}
		}
	}
}

// send gives baresip a command, e.g. sndcode 1.
func (p *phone) send(command, params string) {
	msg, _ := json.Marshal(map[string]string{"command": command, "params": params, "token": command})
	if _, err := fmt.Fprintf(p.conn, "%d:%s,", len(msg), msg); err != nil {
		p.t.Errorf("baresip command %s: %v", command, err)
	}
}

// waitEvent waits until baresip reported an event of type typ.
func (p *phone) waitEvent(typ string, within time.Duration) bool {
	deadline := time.After(within)
	for {
		p.mu.Lock()
		for _, e := range p.events {
			if e.Type == typ {
				p.mu.Unlock()
				return true
			}
		}
		p.mu.Unlock()
		select {
		case <-p.seen:
		case <-deadline:
			return false
		}
	}
}

// heard returns what the phone heard on its calls, 8 kHz.
func (p *phone) heard() sipvoice.PCM {
	files, _ := filepath.Glob(filepath.Join(p.dir, "rec", "*-dec.wav"))
	var all sipvoice.PCM
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if a, err := sipvoice.ReadWAV(b); err == nil {
			all.Rate = a.Rate
			all.Samples = append(all.Samples, a.Samples...)
		}
	}
	return all
}
