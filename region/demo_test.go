package region

import (
	"reflect"
	"strconv"
	"sync"
	"testing"

	"warngate/warning"
)

// dump lists everything a roster holds under code, division by division.
type dump struct {
	people     []Person
	devices    []Device
	households []Household
}

func dumpRoster(t *Tree, r Roster, code string) dump {
	var d dump
	t.Walk(code, func(div *Division) bool {
		r.People(div.Code, func(p Person) bool { d.people = append(d.people, p); return true })
		r.Devices(div.Code, func(x Device) bool { d.devices = append(d.devices, x); return true })
		r.Households(div.Code, func(h Household) bool { d.households = append(d.households, h); return true })
		return true
	})
	return d
}

// count sums a dump as Counts does.
func (d dump) count() Counts {
	var c Counts
	for _, p := range d.people {
		if p.Role == Resident {
			c.Residents++
		} else {
			c.Officials++
		}
		if p.WeChatOpenID != "" {
			c.WeChatFollowers++
		}
	}
	for _, x := range d.devices {
		if x.Kind == Loudspeaker {
			c.Loudspeakers++
		} else {
			c.Screens++
		}
	}
	c.Households = len(d.households)
	return c
}

func TestDemoDeterministic(t *testing.T) {
	tr := Kunming()
	opt := DemoOptions{ResidentsPerVillage: 7, WeChatShare: 0.3}
	a, b := dumpRoster(tr, Demo(tr, opt), kunmingCode), dumpRoster(tr, Demo(tr, opt), kunmingCode)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two demo rosters from the same tree and options differ")
	}
	if len(a.people) != 7280+1738*7 {
		t.Errorf("%d people, want %d", len(a.people), 7280+1738*7)
	}
}

func TestDemoCounts(t *testing.T) {
	tests := []struct {
		name string
		opt  DemoOptions
		code string
		want Counts
	}{
		// 五华区: 1 county, 11 townships, 101 villages.
		{"defaults", DemoOptions{}, wuhua,
			Counts{Officials: 2 + 22 + 4*101, Residents: 20 * 101, WeChatFollowers: 10 * 101, Loudspeakers: 101, Screens: 101, Households: 3 * 101}},
		{"shares", DemoOptions{ResidentsPerVillage: 9, WeChatShare: 0.25, HouseholdsPerVillage: 5, GridWorkersPerVillage: 3}, wuhua,
			Counts{Officials: 2 + 22 + 5*101, Residents: 9 * 101, WeChatFollowers: 2 * 101, Loudspeakers: 101, Screens: 101, Households: 5 * 101}},
		{"none", DemoOptions{ResidentsPerVillage: -1, WeChatShare: -1, HouseholdsPerVillage: -1, GridWorkersPerVillage: -1}, wuhua,
			Counts{Officials: 2 + 22 + 2*101, Loudspeakers: 101, Screens: 101}},
		{"all follow", DemoOptions{ResidentsPerVillage: 3, WeChatShare: 2}, huashan,
			Counts{Officials: 2 + 4*10, Residents: 30, WeChatFollowers: 30, Loudspeakers: 10, Screens: 10, Households: 30}},
		{"village", DemoOptions{}, cuihuxilu,
			Counts{Officials: 4, Residents: 20, WeChatFollowers: 10, Loudspeakers: 1, Screens: 1, Households: 3}},
		{"city", DemoOptions{}, kunmingCode,
			Counts{Officials: 2*14 + 2*150 + 4*1738, Residents: 20 * 1738, WeChatFollowers: 10 * 1738, Loudspeakers: 1738, Screens: 1738, Households: 3 * 1738}},
		{"unknown", DemoOptions{}, "530102999999", Counts{}},
	}
	tr := Kunming()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Demo(tr, tt.opt)
			got := r.Counts(tt.code)
			if got != tt.want {
				t.Errorf("Counts = %+v, want %+v", got, tt.want)
			}
			if walked := dumpRoster(tr, r, tt.code).count(); walked != got {
				t.Errorf("Counts = %+v, but People, Devices and Households give %+v", got, walked)
			}
		})
	}
}

func TestDemoPerson(t *testing.T) {
	tr := Kunming()
	r := Demo(tr, DemoOptions{ResidentsPerVillage: 13})
	all := dumpRoster(tr, r, tr.Root().Code)
	var officials, residents int
	for _, p := range all.people {
		got, ok := r.Person(p.ID)
		if !ok || got != p {
			t.Fatalf("Person(%s) = %+v, %v; want %+v", p.ID, got, ok, p)
		}
		if p.Role == Resident {
			residents++
			continue
		}
		officials++
		if p.Phone == "" || p.WeComUserID == "" {
			t.Errorf("official %s lacks a phone or 企业微信 userid: %+v", p.ID, p)
		}
		if d, _ := tr.Get(p.Division); p.Role.Audience() != officialAudience[d.Level] {
			t.Errorf("official %s is a %s in a %s", p.ID, p.Role, d.Level)
		}
	}
	if officials != 7280 || residents != 13*1738 {
		t.Errorf("%d officials and %d residents, want 7280 and %d", officials, residents, 13*1738)
	}
	for _, h := range all.households {
		gw, ok := r.Person(h.GridWorker)
		if !ok || gw.Role != GridWorker || gw.Division != h.Division {
			t.Errorf("household %s has grid worker %+v, not one of its village", h.ID, gw)
		}
		if h.Category == NoPhone && h.Phone != "" {
			t.Errorf("no_phone household %s has phone %s", h.ID, h.Phone)
		}
	}

	last := "r" + strconv.FormatInt(13*1738-1, 36)
	for _, id := range []string{"", "o", "r", "x1", "oA", "o00", "r01", last + "0", "o" + strconv.Itoa(1<<20), "r-1", "l0", "h0"} {
		if p, ok := r.Person(id); ok {
			t.Errorf("Person(%q) = %+v, want none", id, p)
		}
	}
	if p, ok := r.Person(last); !ok || p.Division != "530181009210" {
		t.Errorf("Person(%s) = %+v, %v; want the last village's last resident", last, p, ok)
	}
}

var officialAudience = map[Level]warning.Audience{
	County:   warning.CountyOfficials,
	Township: warning.TownshipOfficials,
	Village:  warning.VillageOfficials,
}

func TestDemoPhones(t *testing.T) {
	tr := Kunming()
	r := Demo(tr, DemoOptions{ResidentsPerVillage: 575})
	seen := map[string]string{}
	check := func(id, phone string) {
		if phone == "" {
			return
		}
		n, err := strconv.ParseInt(phone, 10, 64)
		if err != nil || n < 19900000000 || n > 19999999999 {
			t.Errorf("%s has phone %s outside the demo range", id, phone)
		}
		if other, dup := seen[phone]; dup {
			t.Fatalf("%s and %s share phone %s", id, other, phone)
		}
		seen[phone] = id
	}
	// A sample: every township with its first and last villages, whole.
	sample := map[*Division]bool{}
	for i := range tr.Len() {
		if d := tr.ByIndex(i); d.Level == Township && len(d.Children) > 0 {
			sample[d] = true
			sample[d.Children[0]] = true
			sample[d.Children[len(d.Children)-1]] = true
		}
	}
	for d := range sample {
		r.People(d.Code, func(p Person) bool { check(p.ID, p.Phone); return true })
		r.Households(d.Code, func(h Household) bool { check(h.ID, h.Phone); return true })
	}
	if len(seen) < 150*575 {
		t.Errorf("only %d phones in the sample", len(seen))
	}
}

func BenchmarkDemoPeople(b *testing.B) {
	tr := Kunming()
	r := Demo(tr, DemoOptions{ResidentsPerVillage: 575})
	var residents int
	for b.Loop() {
		residents = 0
		tr.Walk(kunmingCode, func(d *Division) bool {
			r.People(d.Code, func(p Person) bool {
				if p.Role == Resident {
					residents++
				}
				return true
			})
			return true
		})
	}
	b.ReportMetric(float64(residents), "residents/op")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(residents), "ns/resident")
}

func TestConcurrentUse(t *testing.T) {
	loaded, err := loadTestRoster(t, "roster")
	if err != nil {
		t.Fatal(err)
	}
	demo := Demo(Kunming(), DemoOptions{ResidentsPerVillage: 5})
	want := [2]Counts{loaded.Counts(wuhua), demo.Counts(wuhua)}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			tr := Kunming()
			for i, r := range []Roster{loaded, demo} {
				if got := dumpRoster(tr, r, wuhua).count(); got != want[i] {
					t.Errorf("roster %d: Counts %+v, walked %+v", i, want[i], got)
				}
				r.Person("r1")
			}
		})
	}
	wg.Wait()
}
