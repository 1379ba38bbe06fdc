package roster

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"

	"warngate/region"
)

// chunk is the rows of one kind in one division, as stored. Chunks are
// immutable and shared by every version in memory that names them.
type chunk struct {
	id   string
	kind Kind
	data string
	ends []uint32 // where each row ends (at its '\n'), from the start of data
	// counts of this division alone.
	counts region.Counts
}

// chunkID names content: the first 96 bits of its SHA-256, with the kind.
func chunkID(k Kind, data string) string {
	h := sha256.New()
	h.Write([]byte{k.tag(), 0})
	h.Write([]byte(data))
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// parseChunk indexes the rows of stored content and counts them. It
// refuses content it cannot decode: a chunk is written only by this
// package, so that is a bug or a corrupt store, never a user's mistake.
func parseChunk(id string, k Kind, data string) (*chunk, error) {
	c := &chunk{id: id, kind: k, data: data, ends: make([]uint32, 0, strings.Count(data, "\n"))}
	start := 0
	for start < len(data) {
		end := strings.IndexByte(data[start:], rowSep)
		if end < 0 {
			return nil, fmt.Errorf("roster: chunk %s: last row has no end", id)
		}
		row := data[start : start+end]
		ok := true
		switch k {
		case People:
			var p region.Person
			if p, ok = decodePerson(row, ""); ok {
				if p.Role == region.Resident {
					c.counts.Residents++
				} else {
					c.counts.Officials++
				}
				if p.WeChatOpenID != "" {
					c.counts.WeChatFollowers++
				}
			}
		case Devices:
			var d region.Device
			if d, ok = decodeDevice(row, ""); ok {
				if d.Kind == region.Loudspeaker {
					c.counts.Loudspeakers++
				} else {
					c.counts.Screens++
				}
			}
		case Households:
			_, ok = decodeHousehold(row, "")
			c.counts.Households++
		}
		if !ok {
			return nil, fmt.Errorf("roster: chunk %s: row %d cannot be decoded", id, len(c.ends)+1)
		}
		start += end + 1
		c.ends = append(c.ends, uint32(start-1))
	}
	return c, nil
}

func (c *chunk) len() int {
	if c == nil {
		return 0
	}
	return len(c.ends)
}

func (c *chunk) row(i int) string {
	start := uint32(0)
	if i > 0 {
		start = c.ends[i-1] + 1
	}
	return c.data[start:c.ends[i]]
}

// Info describes a version.
type Info struct {
	Number     int64     `json:"version"`
	At         time.Time `json:"at,omitzero"`
	By         string    `json:"by,omitempty"`
	Note       string    `json:"note,omitempty"`
	People     int       `json:"people"`
	Devices    int       `json:"devices"`
	Households int       `json:"households"`
}

// version is one version of the roster in memory. It implements
// region.Roster; its indexes by id and phone are built on first use.
type version struct {
	info   Info
	tree   *region.Tree
	chunks [3][]*chunk // by kind, then by division index; nil where empty
	counts []region.Counts

	once    sync.Once
	byID    map[string]uint64 // person id → division index << 32 | row
	byPhone map[string]uint64
	byHH    map[string]uint64
}

var _ region.Roster = (*version)(nil)

// newVersion assembles a version from its chunks, by kind and division index.
func newVersion(info Info, tree *region.Tree, chunks [3][]*chunk) *version {
	v := &version{info: info, tree: tree, chunks: chunks, counts: make([]region.Counts, tree.Len())}
	for k := range chunks {
		for i, c := range chunks[k] {
			if c != nil {
				v.counts[i] = v.counts[i].Add(c.counts)
			}
		}
	}
	tree.SumSubtrees(v.counts)
	v.info.People, v.info.Devices, v.info.Households = v.total(People), v.total(Devices), v.total(Households)
	return v
}

func (v *version) total(k Kind) int {
	n := 0
	for _, c := range v.chunks[k.index()] {
		n += c.len()
	}
	return n
}

func (v *version) chunk(k Kind, code string) (*chunk, string) {
	i, ok := v.tree.Index(code)
	if !ok {
		return nil, ""
	}
	return v.chunks[k.index()][i], code
}

// People implements region.Roster.
func (v *version) People(code string, fn func(region.Person) bool) {
	c, div := v.chunk(People, code)
	for i := range c.len() {
		p, _ := decodePerson(c.row(i), div)
		if !fn(p) {
			return
		}
	}
}

// Devices implements region.Roster.
func (v *version) Devices(code string, fn func(region.Device) bool) {
	c, div := v.chunk(Devices, code)
	for i := range c.len() {
		d, _ := decodeDevice(c.row(i), div)
		if !fn(d) {
			return
		}
	}
}

// Households implements region.Roster.
func (v *version) Households(code string, fn func(region.Household) bool) {
	c, div := v.chunk(Households, code)
	for i := range c.len() {
		h, _ := decodeHousehold(c.row(i), div)
		if !fn(h) {
			return
		}
	}
}

// Counts implements region.Roster.
func (v *version) Counts(code string) region.Counts {
	if i, ok := v.tree.Index(code); ok {
		return v.counts[i]
	}
	return region.Counts{}
}

// index builds the lookups by id and phone: a map entry per person and
// household, its key sharing the chunk's memory. When several people share
// a phone, officials come first, then the first in division order.
func (v *version) index() {
	v.once.Do(func() {
		v.byID = make(map[string]uint64, v.info.People)
		v.byPhone = make(map[string]uint64, v.info.People)
		v.byHH = make(map[string]uint64, v.info.Households)
		for i, c := range v.chunks[People.index()] {
			for r := range c.len() {
				row := c.row(r)
				loc := uint64(i)<<32 | uint64(r)
				v.byID[rowID(row)] = loc
				p, _ := decodePerson(row, "")
				if p.Phone == "" {
					continue
				}
				if prev, ok := v.byPhone[p.Phone]; !ok || (!v.at(prev).Role.Audience().Official() && p.Role.Audience().Official()) {
					v.byPhone[p.Phone] = loc
				}
			}
		}
		for i, c := range v.chunks[Households.index()] {
			for r := range c.len() {
				v.byHH[rowID(c.row(r))] = uint64(i)<<32 | uint64(r)
			}
		}
	})
}

func (v *version) at(loc uint64) region.Person {
	i, r := int(loc>>32), int(uint32(loc))
	p, _ := decodePerson(v.chunks[People.index()][i].row(r), v.tree.ByIndex(i).Code)
	return p
}

// Person implements region.Roster.
func (v *version) Person(id string) (region.Person, bool) {
	v.index()
	loc, ok := v.byID[id]
	if !ok {
		return region.Person{}, false
	}
	return v.at(loc), true
}

// ByPhone implements region.Roster.
func (v *version) ByPhone(phone string) (region.Person, bool) {
	v.index()
	loc, ok := v.byPhone[phone]
	if !ok {
		return region.Person{}, false
	}
	return v.at(loc), true
}

// Household implements region.Roster.
func (v *version) Household(id string) (region.Household, bool) {
	v.index()
	loc, ok := v.byHH[id]
	if !ok {
		return region.Household{}, false
	}
	i, r := int(loc>>32), int(uint32(loc))
	h, _ := decodeHousehold(v.chunks[Households.index()][i].row(r), v.tree.ByIndex(i).Code)
	return h, true
}

// locate finds a row of any kind by id: its division index and row. People
// and households are indexed; devices are looked for division by division
// (they are few and looked up only by edits).
func (v *version) locate(k Kind, id string) (div, row int, ok bool) {
	switch k {
	case People, Households:
		v.index()
		m := v.byID
		if k == Households {
			m = v.byHH
		}
		loc, found := m[id]
		return int(loc >> 32), int(uint32(loc)), found
	}
	for i, c := range v.chunks[Devices.index()] {
		for r := range c.len() {
			if rowID(c.row(r)) == id {
				return i, r, true
			}
		}
	}
	return 0, 0, false
}

// materialize turns a region.Roster (the generated demo roster) into a
// version in memory, so that the first change of a demo roster keeps the
// rest of it.
func materialize(tree *region.Tree, r region.Roster) *version {
	var chunks [3][]*chunk
	for k := range chunks {
		chunks[k] = make([]*chunk, tree.Len())
	}
	var b []byte
	put := func(k Kind, i int) {
		if len(b) == 0 {
			return
		}
		data := string(b)
		c, err := parseChunk(chunkID(k, data), k, data)
		if err != nil {
			panic(err) // encoded here from valid rows
		}
		chunks[k.index()][i] = c
		b = b[:0]
	}
	for i := range tree.Len() {
		code := tree.ByIndex(i).Code
		if r != nil {
			r.People(code, func(p region.Person) bool { b = appendPerson(b, p); return true })
			put(People, i)
			r.Devices(code, func(d region.Device) bool { b = appendDevice(b, d); return true })
			put(Devices, i)
			r.Households(code, func(h region.Household) bool { b = appendHousehold(b, h); return true })
			put(Households, i)
		}
	}
	return newVersion(Info{}, tree, chunks)
}
