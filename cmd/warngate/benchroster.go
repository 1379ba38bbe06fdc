package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"warngate/config"
	"warngate/region"
	"warngate/roster"
)

// rosterBench sizes the roster bench.
type rosterBench struct {
	redisURL  string
	residents int
	officials int
}

// benchRoster imports a city's roster — residents spread over every village,
// officials over every county, township and village — as one CSV upload
// through the API's import route into an empty Redis database, and reports
// how long it took until the new version was served, and Redis's own count
// of the bytes it added per person. It then loads the version in a second
// store, as a worker would, and edits one person.
func benchRoster(ctx context.Context, o rosterBench, stdout, stderr io.Writer) error {
	a, base, stop, err := rosterGateway(o.redisURL, stderr)
	if err != nil {
		return err
	}
	defer stop()
	tree := a.tree
	memBefore := usedMemory(ctx, a.rdb)

	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeCityCSV(pw, tree, o.residents, o.officials)) }()
	fmt.Fprintf(stdout, "roster: importing %d residents and %d officials as one CSV through POST /api/v1/roster/import\n", o.residents, o.officials)
	start := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/roster/import?kind=people&dry_run=false", pr)
	req.Header.Set("Authorization", "Bearer bench")
	req.Header.Set("Content-Type", "text/csv")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("roster import: %w", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("roster import: %s: %.500s", resp.Status, body)
	}
	took := time.Since(start)
	info := a.rosters.Info()
	if info.People != o.residents+o.officials {
		return fmt.Errorf("roster import: version %d holds %d people, want %d", info.Number, info.People, o.residents+o.officials)
	}
	memAfter := usedMemory(ctx, a.rdb)
	perPerson := float64(memAfter-memBefore) / float64(info.People)
	fmt.Fprintf(stdout, "  import:                %s for %d people (version %d served)\n", took.Round(time.Millisecond), info.People, info.Number)
	fmt.Fprintf(stdout, "  redis memory:          %.1f bytes per person (%d bytes)\n", perPerson, memAfter-memBefore)

	// A worker's view: another store loads the version from Redis.
	other := roster.New(a.rdb, roster.Options{Prefix: a.cfg.Redis.SharedPrefix(""), Tree: tree})
	start = time.Now()
	r, n, err := other.Current(ctx)
	if err != nil {
		return err
	}
	if _, ok := r.Person("o0"); !ok {
		return fmt.Errorf("roster: version %d lacks official o0", n)
	}
	load := time.Since(start)
	fmt.Fprintf(stdout, "  load in a worker:      %s (manifest, chunks, indexes by id and phone)\n", load.Round(time.Millisecond))

	// One edit: a new version that shares every other chunk.
	p, _ := r.Person("o0")
	before := usedMemory(ctx, a.rdb)
	start = time.Now()
	res, err := a.rosters.Put(ctx, []string{p.ID, p.Name, "13912345678", p.WeChatOpenID, p.WeComUserID, string(p.Role), p.Division}, roster.Change{Kind: roster.People, By: "bench"})
	if err != nil || res.Version != n+1 {
		return fmt.Errorf("roster edit: %v %+v", err, res)
	}
	edit := time.Since(start)
	fmt.Fprintf(stdout, "  edit of one person:    %s, a new version costing %d bytes\n", edit.Round(time.Millisecond), usedMemory(ctx, a.rdb)-before)
	fmt.Fprintf(stdout, "roster_import_seconds=%.1f roster_bytes_per_person=%.0f roster_load_seconds=%.2f roster_edit_ms=%d\n",
		took.Seconds(), perPerson, load.Seconds(), edit.Milliseconds())
	return nil
}

// writeCityCSV writes a people CSV: officials first (county leader and duty
// officer, township leader and duty officer, then village officers, info
// officers and grid workers until officials are used up), then residents
// spread evenly over the villages, half of them with a WeChat openid of the
// real length (28 characters).
func writeCityCSV(w io.Writer, tree *region.Tree, residents, officials int) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	bw.WriteString("id,name,phone,wechat_openid,wecom_userid,role,division\n")
	var villages, upper []*region.Division
	tree.Walk(benchCity(tree), func(d *region.Division) bool {
		switch d.Level {
		case region.Village:
			villages = append(villages, d)
		case region.County, region.Township:
			upper = append(upper, d)
		}
		return true
	})
	names := []string{"王伟", "李芳", "张敏", "刘洋", "陈静", "杨勇", "黄磊", "赵娟", "吴秀英", "周建国", "徐桂英", "孙志强"}
	line := make([]byte, 0, 160)
	person := func(id string, n int, phone int64, openid bool, wecom bool, role region.Role, div string) {
		line = append(line[:0], id...)
		line = append(line, ',')
		line = append(line, names[n%len(names)]...)
		line = append(line, ',')
		line = strconv.AppendInt(line, phone, 10)
		line = append(line, ',')
		if openid {
			line = append(line, "oWx1Q5"...)
			line = append(line, fmt.Sprintf("%022x", uint64(n)*2654435761)...)
		}
		line = append(line, ',')
		if wecom {
			line = append(line, "wg"...)
			line = append(line, id...)
		}
		line = append(line, ',')
		line = append(line, role...)
		line = append(line, ',')
		line = append(line, div...)
		line = append(line, '\n')
		bw.Write(line)
	}
	o := 0
	official := func(role region.Role, div string) {
		if o < officials {
			person("o"+strconv.Itoa(o), o, 17700000000+int64(o), false, true, role, div)
			o++
		}
	}
	for _, d := range upper {
		if d.Level == region.County {
			official(region.CountyLeader, d.Code)
			official(region.CountyDuty, d.Code)
		} else {
			official(region.TownshipLeader, d.Code)
			official(region.TownshipDuty, d.Code)
		}
	}
	for round := 0; o < officials; round++ {
		for _, v := range villages {
			switch round {
			case 0:
				official(region.VillageOfficer, v.Code)
			case 1:
				official(region.InfoOfficer, v.Code)
			default:
				official(region.GridWorker, v.Code)
			}
		}
	}
	for i := range residents {
		v := villages[i*len(villages)/residents]
		person("r"+strconv.Itoa(i), i, 15000000000+int64(i), i%2 == 0, false, region.Resident, v.Code)
	}
	return bw.Flush()
}

// rosterGateway runs a gateway's API on the bench's Redis, without workers:
// the bootstrap token "bench" and no demo roster, so that the import is the
// roster's first version.
func rosterGateway(redisURL string, stderr io.Writer) (*app, string, func(), error) {
	cfg := config.Default()
	cfg.Redis.URL = redisURL
	cfg.Simulator.Secret = "bench"
	cfg.LinkKey = "bench-link-key-0123456789"
	cfg.AdminToken = "bench"
	cfg.Log.Level = "error"
	// An empty roster file: no demo roster under the import, which is then
	// the roster's first version.
	empty, err := os.CreateTemp("", "warngate-bench-people-*.csv")
	if err != nil {
		return nil, "", nil, err
	}
	empty.WriteString(strings.Join(region.PeopleColumns, ",") + "\n")
	empty.Close()
	defer os.Remove(empty.Name())
	cfg.Roster.People = empty.Name()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", nil, err
	}
	cfg.Listen = ln.Addr().String()
	cfg.PublicURL = ""
	if err := cfg.Finish(); err != nil {
		ln.Close()
		return nil, "", nil, err
	}
	w, err := preflight(cfg, roleServe, nil)
	if err != nil {
		ln.Close()
		return nil, "", nil, err
	}
	a, err := newApp(cfg, w, newLogger(cfg.Log, stderr))
	if err != nil {
		ln.Close()
		return nil, "", nil, err
	}
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return a, "http://" + cfg.Listen, func() { srv.Close(); a.close() }, nil
}
