package sipvoice

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// DefaultTTSCommand speaks Mandarin with espeak-ng, reading the text on
// its standard input and writing a WAV file.
var DefaultTTSCommand = []string{"espeak-ng", "-v", "cmn", "-w", "{wav}", "--stdin"}

// TTSTimeout bounds one run of the synthesiser.
const TTSTimeout = 60 * time.Second

// Synth turns a call's text into the 8 kHz WAV file it plays, by a
// command, and keeps every file it made in a directory: a warning's text
// is synthesised once for all the calls that say it, and again after a
// restart only when the directory is gone.
type Synth struct {
	command []string
	dir     string

	mu     sync.Mutex
	flying map[string]*flight
}

type flight struct {
	done chan struct{}
	path string
	err  error
}

// NewSynth returns a synthesiser running command, whose arguments may hold
// {wav}, the file it must write, and {text}, the text; without {text} the
// text goes to the command's standard input. The output may be any PCM WAV:
// it is mixed down to mono and resampled to 8 kHz. Files are kept in dir,
// which is made when missing.
func NewSynth(command []string, dir string) (*Synth, error) {
	if err := checkCommand(command); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("tts_cache_dir: %w", err)
	}
	return &Synth{command: command, dir: dir, flying: map[string]*flight{}}, nil
}

// checkCommand checks a synthesiser's command line.
func checkCommand(command []string) error {
	if len(command) == 0 {
		return errors.New("tts_command: empty: give the synthesiser and its arguments, e.g. [espeak-ng, -v, cmn, -w, \"{wav}\", --stdin]")
	}
	if !strings.Contains(strings.Join(command[1:], "\x00"), "{wav}") {
		return fmt.Errorf("tts_command: no argument holds {wav}, the file the synthesiser must write: e.g. [%s, -w, \"{wav}\", …]", command[0])
	}
	return nil
}

// file is where the audio of text is kept: a hash of the command and the
// text, so that another synthesiser's file is never played.
func (s *Synth) file(text string) string {
	h := sha256.New()
	for _, a := range s.command {
		h.Write([]byte(a))
		h.Write([]byte{0})
	}
	h.Write([]byte(text))
	return filepath.Join(s.dir, hex.EncodeToString(h.Sum(nil)[:16])+".wav")
}

// WAV returns the file that says text, 8 kHz mono 16-bit PCM, making it
// when it is not kept yet. Calls for the same text at once share one run
// of the synthesiser.
func (s *Synth) WAV(ctx context.Context, text string) (string, error) {
	path := s.file(text)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	s.mu.Lock()
	if f, ok := s.flying[path]; ok {
		s.mu.Unlock()
		select {
		case <-f.done:
			return f.path, f.err
		case <-ctx.Done():
			return "", context.Cause(ctx)
		}
	}
	f := &flight{done: make(chan struct{})}
	s.flying[path] = f
	s.mu.Unlock()

	f.path, f.err = path, s.make(ctx, text, path)
	if f.err != nil {
		f.path = ""
	}
	s.mu.Lock()
	delete(s.flying, path)
	s.mu.Unlock()
	close(f.done)
	return f.path, f.err
}

// make runs the synthesiser for text and keeps its audio, at 8 kHz, in
// path.
func (s *Synth) make(ctx context.Context, text, path string) error {
	raw, err := os.CreateTemp(s.dir, "tts-*.wav")
	if err != nil {
		return fmt.Errorf("tts: %w", err)
	}
	raw.Close()
	defer os.Remove(raw.Name())
	ctx, cancel := context.WithTimeout(ctx, TTSTimeout)
	defer cancel()
	args, stdin := make([]string, 0, len(s.command)-1), true
	for _, a := range s.command[1:] {
		if strings.Contains(a, "{text}") {
			stdin = false
		}
		args = append(args, strings.NewReplacer("{wav}", raw.Name(), "{text}", text).Replace(a))
	}
	cmd := exec.CommandContext(ctx, s.command[0], args...)
	if stdin {
		cmd.Stdin = strings.NewReader(text)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("tts: %s: %w: %s", s.command[0], err, firstLine(stderr.String()))
	}
	b, err := os.ReadFile(raw.Name())
	if err != nil {
		return fmt.Errorf("tts: %s wrote no file: %w", s.command[0], err)
	}
	pcm, err := ReadWAV(b)
	if err != nil {
		return fmt.Errorf("tts: %s: %w", s.command[0], err)
	}
	if len(pcm.Samples) == 0 {
		return fmt.Errorf("tts: %s wrote no sound", s.command[0])
	}
	tmp, err := os.CreateTemp(s.dir, "8k-*.wav")
	if err != nil {
		return fmt.Errorf("tts: %w", err)
	}
	_, werr := tmp.Write(pcm.Resample(Rate).WAV())
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("tts: keep audio: %w", werr)
	}
	return nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
