// Package rediscluster starts a Redis Cluster of redis-server processes on
// loopback ports, for the cluster test and `warngate bench --cluster`: so
// many masters with so many replicas each, the slots split evenly among
// the masters, failover quick (a node is dead after NodeTimeout).
package rediscluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options shape the cluster.
type Options struct {
	Masters  int // 3 unless set
	Replicas int // replicas per master
	// NodeTimeout is how long a master may not answer before its replica
	// takes over (cluster-node-timeout); 1 s unless set.
	NodeTimeout time.Duration
	// Dir holds each node's files; a temporary directory unless set.
	Dir string
	// Server is the redis-server program; found on PATH unless set.
	Server string
	// Log receives the nodes' output; discarded unless set.
	Log *os.File
	// FullCoverage makes every node refuse queries while some slot has no
	// master (cluster-require-full-coverage yes, Redis's default); unset,
	// the shards that have one go on serving.
	FullCoverage bool
}

// Node is one redis-server of the cluster.
type Node struct {
	Addr   string
	ID     string
	Master string // the address of its master, for a replica
	cmd    *exec.Cmd
	done   chan struct{}
}

// Cluster is a running cluster.
type Cluster struct {
	Nodes []*Node
	dir   string
	temp  bool
	mu    sync.Mutex
}

// Available reports whether redis-server can be found.
func Available() bool {
	_, err := exec.LookPath("redis-server")
	return err == nil
}

// Start starts the nodes, joins them, gives each master an even share of
// the 16384 slots and each replica its master, and waits until every node
// says the cluster is ok.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if o.Masters <= 0 {
		o.Masters = 3
	}
	if o.NodeTimeout <= 0 {
		o.NodeTimeout = time.Second
	}
	if o.Server == "" {
		p, err := exec.LookPath("redis-server")
		if err != nil {
			return nil, errors.New("redis-server not found: apt-get install -y redis-server")
		}
		o.Server = p
	}
	c := &Cluster{dir: o.Dir}
	if c.dir == "" {
		d, err := os.MkdirTemp("", "warngate-cluster-")
		if err != nil {
			return nil, err
		}
		c.dir, c.temp = d, true
	}
	n := o.Masters * (1 + o.Replicas)
	ports, err := freePorts(n)
	if err != nil {
		return nil, err
	}
	for _, p := range ports {
		node, err := c.startNode(o, p)
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.Nodes = append(c.Nodes, node)
	}
	if err := c.join(ctx, o); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		p := l.Addr().(*net.TCPAddr).Port
		// A cluster node also listens on port+10000 for its bus.
		if p+10000 > 65535 {
			continue
		}
		ports = append(ports, p)
	}
	return ports, nil
}

func (c *Cluster) startNode(o Options, port int) (*Node, error) {
	dir := filepath.Join(c.dir, strconv.Itoa(port))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	args := []string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.FormatInt(o.NodeTimeout.Milliseconds(), 10),
		// A replica takes over however long it was cut off.
		"--cluster-replica-validity-factor", "0",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no",
		"--cluster-require-full-coverage", map[bool]string{true: "yes", false: "no"}[o.FullCoverage],
	}
	cmd := exec.Command(o.Server, args...)
	if o.Log != nil {
		cmd.Stdout, cmd.Stderr = o.Log, o.Log
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("redis-server on %d: %w", port, err)
	}
	node := &Node{Addr: "127.0.0.1:" + strconv.Itoa(port), cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(node.done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cl := redis.NewClient(&redis.Options{Addr: node.Addr})
		id, err := cl.Do(context.Background(), "CLUSTER", "MYID").Text()
		cl.Close()
		if err == nil {
			node.ID = id
			return node, nil
		}
		select {
		case <-node.done:
			return nil, fmt.Errorf("redis-server on %d exited at start", port)
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("redis-server on %d: %w", port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *Cluster) join(ctx context.Context, o Options) error {
	clients := make([]*redis.Client, len(c.Nodes))
	for i, n := range c.Nodes {
		clients[i] = redis.NewClient(&redis.Options{Addr: n.Addr})
		defer clients[i].Close()
	}
	for i := 0; i < o.Masters; i++ {
		lo, hi := i*16384/o.Masters, (i+1)*16384/o.Masters-1
		if err := clients[i].Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			return fmt.Errorf("slots %d-%d on %s: %w", lo, hi, c.Nodes[i].Addr, err)
		}
	}
	host, port, _ := net.SplitHostPort(c.Nodes[0].Addr)
	for i := 1; i < len(c.Nodes); i++ {
		if err := clients[i].ClusterMeet(ctx, host, port).Err(); err != nil {
			return fmt.Errorf("meet from %s: %w", c.Nodes[i].Addr, err)
		}
	}
	// Every node must know every other before a replica can name its master.
	if err := waitFor(ctx, 20*time.Second, func() (bool, error) {
		for _, cl := range clients {
			nodes, err := cl.ClusterNodes(ctx).Result()
			if err != nil {
				return false, err
			}
			if strings.Count(strings.TrimSpace(nodes), "\n")+1 < len(c.Nodes) || strings.Contains(nodes, "handshake") {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		return fmt.Errorf("nodes meeting: %w", err)
	}
	for r := 0; r < o.Replicas; r++ {
		for m := 0; m < o.Masters; m++ {
			i := o.Masters*(1+r) + m
			if err := clients[i].Do(ctx, "CLUSTER", "REPLICATE", c.Nodes[m].ID).Err(); err != nil {
				return fmt.Errorf("%s replicating %s: %w", c.Nodes[i].Addr, c.Nodes[m].Addr, err)
			}
			c.Nodes[i].Master = c.Nodes[m].Addr
		}
	}
	return c.WaitOK(ctx, 30*time.Second)
}

// WaitOK waits until every live node says cluster_state:ok and every
// replica is in sync with its master.
func (c *Cluster) WaitOK(ctx context.Context, within time.Duration) error {
	return waitFor(ctx, within, func() (bool, error) {
		for _, n := range c.Live() {
			cl := redis.NewClient(&redis.Options{Addr: n.Addr})
			info, err := cl.ClusterInfo(ctx).Result()
			var repl string
			if err == nil {
				repl, err = cl.Info(ctx, "replication").Result()
			}
			cl.Close()
			if err != nil {
				return false, nil
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return false, nil
			}
			if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
				return false, nil
			}
		}
		return true, nil
	})
}

func waitFor(ctx context.Context, within time.Duration, ok func() (bool, error)) error {
	deadline := time.Now().Add(within)
	var last error
	for {
		done, err := ok()
		if done {
			return nil
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			if last != nil {
				return last
			}
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Addrs are the nodes' addresses, masters first.
func (c *Cluster) Addrs() []string {
	var a []string
	for _, n := range c.Nodes {
		a = append(a, n.Addr)
	}
	return a
}

// URL is the cluster's address as redis.url takes it.
func (c *Cluster) URL() string {
	addrs := c.Addrs()
	u := "redis-cluster://" + addrs[0]
	for i, a := range addrs[1:] {
		if i == 0 {
			u += "?"
		} else {
			u += "&"
		}
		u += "addr=" + a
	}
	return u
}

// Live lists the nodes whose process still runs.
func (c *Cluster) Live() []*Node {
	var live []*Node
	for _, n := range c.Nodes {
		select {
		case <-n.done:
		default:
			live = append(live, n)
		}
	}
	return live
}

// Masters lists the live nodes that are masters now, by asking each.
func (c *Cluster) Masters(ctx context.Context) []*Node {
	var ms []*Node
	for _, n := range c.Live() {
		cl := redis.NewClient(&redis.Options{Addr: n.Addr})
		role, err := cl.Do(ctx, "ROLE").Slice()
		cl.Close()
		if err == nil && len(role) > 0 && role[0] == "master" {
			ms = append(ms, n)
		}
	}
	return ms
}

// Kill ends a node as a crash would (SIGKILL) and waits for its process.
func (c *Cluster) Kill(n *Node) {
	if n.cmd.Process != nil {
		n.cmd.Process.Kill()
	}
	<-n.done
}

// Pause stops a node's process (SIGSTOP): it answers nobody, as a hung
// machine, until Resume.
func (c *Cluster) Pause(n *Node) error { return n.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume lets a paused node run on.
func (c *Cluster) Resume(n *Node) error { return n.cmd.Process.Signal(syscall.SIGCONT) }

// Stop ends every node and removes a temporary directory.
func (c *Cluster) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.Nodes {
		c.Kill(n)
	}
	if c.temp {
		os.RemoveAll(c.dir)
	}
}
