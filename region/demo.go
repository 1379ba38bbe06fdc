package region

import (
	"math"
	"strconv"
	"sync"
)

// DemoOptions shapes the roster Demo generates.
type DemoOptions struct {
	// ResidentsPerVillage is how many residents each village has. Zero means
	// 20; a negative value means none. It is capped so that the tree has at
	// most 80 million residents, the size of their phone range.
	ResidentsPerVillage int
	// WeChatShare is the fraction of each village's residents who follow the
	// official account and so have an openid, spread evenly over the village.
	// Zero means 0.5; a negative value means none; values above 1 mean all.
	WeChatShare float64
	// HouseholdsPerVillage is how many households each village has. Zero
	// means 3; a negative value means none.
	HouseholdsPerVillage int
	// GridWorkersPerVillage is how many grid workers each village has. Zero
	// means 2; a negative value means none, and then households have no grid
	// worker.
	GridWorkersPerVillage int
}

// Demo phone numbers. They are made up but lie in China Telecom's live 199
// range, so a demo roster must never be wired to a real SMS gateway.
const (
	residentPhones  = 19900000000 // residents: 19900000000 + resident number
	officialPhones  = 19980000000 // officials: 19980000000 + official number
	householdPhones = 19990000000 // households: 19990000000 + household number, to 19999999999
	lastPhone       = 19999999999
)

var (
	countyRoles   = []Role{CountyLeader, CountyDuty}
	townshipRoles = []Role{TownshipLeader, TownshipDuty}
	villageRoles  = []Role{VillageOfficer, InfoOfficer}
)

// demo is a generated Roster. Officials are held; residents, devices and
// households are computed from their village's number and their own, so a
// city of a million residents costs no memory.
type demo struct {
	tree   *Tree
	opt    DemoOptions // defaults applied and capped
	follow int64       // WeChatShare in millionths

	villages []int32 // village number → division index, in file order
	village  []int32 // division index → village number, or -1

	officials []Person // officials[n].ID is "o" + base36(n)
	first     []int32  // division index → its first official; one extra entry at the end

	counts []Counts // of each subtree
}

var _ Roster = (*demo)(nil)

// Demo generates a roster for every division of t, for trying the product and
// for benchmarks. The same tree and options always give the same roster.
//
// Each county has a county_leader and a county_duty, each township a
// township_leader and a township_duty, and each village a village_officer, an
// info_officer and GridWorkersPerVillage grid workers; every official has a
// phone and a 企业微信 userid. Each village also has ResidentsPerVillage
// residents, a loudspeaker (platform id LS-<code>), a screen (SC-<code>) and
// HouseholdsPerVillage households, whose categories rotate and half of which
// have no phone.
//
// IDs are short: officials "o", residents "r" and households "h" followed by
// a number in base 36; a village's loudspeaker and screen are "l" and "s"
// followed by the village's number. All phone numbers are made up, from
// 19900000000 for residents, 19980000000 for officials and 19990000000 for
// households; they lie in a live carrier range, so a demo roster must never
// reach a real SMS gateway.
func Demo(t *Tree, opt DemoOptions) Roster {
	d := &demo{tree: t, village: make([]int32, t.Len())}
	var upper int // counties and townships
	for i := range t.divs {
		d.village[i] = -1
		switch t.divs[i].Level {
		case Village:
			d.village[i] = int32(len(d.villages))
			d.villages = append(d.villages, int32(i))
		case County, Township:
			upper++
		}
	}
	d.opt = opt.normalize(len(d.villages), upper)
	d.follow = int64(math.Round(d.opt.WeChatShare * 1e6))

	d.first = make([]int32, t.Len()+1)
	for i := range t.divs {
		div := &t.divs[i]
		d.first[i] = int32(len(d.officials))
		switch div.Level {
		case County:
			d.addOfficials(div, countyRoles, 0)
		case Township:
			d.addOfficials(div, townshipRoles, 0)
		case Village:
			d.addOfficials(div, villageRoles, d.opt.GridWorkersPerVillage)
		}
	}
	d.first[t.Len()] = int32(len(d.officials))

	d.counts = make([]Counts, t.Len())
	followers := int(int64(d.opt.ResidentsPerVillage) * d.follow / 1e6)
	for i := range d.counts {
		c := &d.counts[i]
		c.Officials = int(d.first[i+1] - d.first[i])
		if d.village[i] >= 0 {
			c.Residents = d.opt.ResidentsPerVillage
			c.WeChatFollowers = followers
			c.Loudspeakers, c.Screens = 1, 1
			c.Households = d.opt.HouseholdsPerVillage
		}
	}
	t.sumSubtrees(d.counts)
	return d
}

// normalize applies the defaults and the caps that keep phone numbers unique.
func (o DemoOptions) normalize(villages, upper int) DemoOptions {
	perVillage := func(v, def, total int) int {
		switch {
		case v == 0:
			v = def
		case v < 0:
			v = 0
		}
		if villages > 0 && v > total/villages {
			v = total / villages
		}
		return v
	}
	o.ResidentsPerVillage = perVillage(o.ResidentsPerVillage, 20, officialPhones-residentPhones)
	o.HouseholdsPerVillage = perVillage(o.HouseholdsPerVillage, 3, lastPhone+1-householdPhones)
	officials := householdPhones - officialPhones - 2*upper - len(villageRoles)*villages
	o.GridWorkersPerVillage = perVillage(o.GridWorkersPerVillage, 2, max(officials, 0))
	switch {
	case o.WeChatShare == 0:
		o.WeChatShare = 0.5
	case !(o.WeChatShare > 0): // negative or NaN
		o.WeChatShare = 0
	case o.WeChatShare > 1:
		o.WeChatShare = 1
	}
	return o
}

func (d *demo) addOfficials(div *Division, roles []Role, gridWorkers int) {
	add := func(r Role) {
		n := uint64(len(d.officials))
		id := "o" + strconv.FormatUint(n, 36)
		d.officials = append(d.officials, Person{
			ID:          id,
			Name:        demoName(n, officialSalt),
			Phone:       strconv.FormatUint(officialPhones+n, 10),
			WeComUserID: "demo-" + id,
			Role:        r,
			Division:    div.Code,
		})
	}
	for _, r := range roles {
		add(r)
	}
	for range gridWorkers {
		add(GridWorker)
	}
}

// follows reports whether resident n of a village has an openid. Followers
// are spread evenly, and a village has exactly ResidentsPerVillage × share of
// them (rounded down), which keeps Counts arithmetic.
func (d *demo) follows(n int) bool {
	return (int64(n)+1)*d.follow/1e6 > int64(n)*d.follow/1e6
}

// resident computes resident n of village k.
func (d *demo) resident(k int32, n int) Person {
	x := uint64(k)*uint64(d.opt.ResidentsPerVillage) + uint64(n)
	// One allocation holds the ID, the phone and the openid.
	var a [40]byte
	b := append(a[:0], 'r')
	b = strconv.AppendUint(b, x, 36)
	id := len(b)
	b = strconv.AppendUint(b, residentPhones+x, 10)
	phone := len(b)
	if d.follows(n) {
		b = append(b, "oDemo-"...)
		b = strconv.AppendUint(b, x, 36)
	}
	s := string(b)
	return Person{
		ID:           s[:id],
		Name:         demoName(x, residentSalt),
		Phone:        s[id:phone],
		WeChatOpenID: s[phone:],
		Role:         Resident,
		Division:     d.tree.divs[d.villages[k]].Code,
	}
}

// People implements Roster. Officials come first, then residents.
func (d *demo) People(code string, fn func(Person) bool) {
	i, ok := d.tree.byCode[code]
	if !ok {
		return
	}
	for _, p := range d.officials[d.first[i]:d.first[i+1]] {
		if !fn(p) {
			return
		}
	}
	if k := d.village[i]; k >= 0 {
		for n := range d.opt.ResidentsPerVillage {
			if !fn(d.resident(k, n)) {
				return
			}
		}
	}
}

// Devices implements Roster. Each village has a loudspeaker, then a screen.
func (d *demo) Devices(code string, fn func(Device) bool) {
	i, ok := d.tree.byCode[code]
	if !ok || d.village[i] < 0 {
		return
	}
	v := &d.tree.divs[i]
	k := strconv.FormatInt(int64(d.village[i]), 36)
	if fn(Device{ID: "l" + k, Name: v.Name + "应急广播", Kind: Loudspeaker, Division: v.Code, Platform: "LS-" + v.Code}) {
		fn(Device{ID: "s" + k, Name: v.Name + "显示屏", Kind: Screen, Division: v.Code, Platform: "SC-" + v.Code})
	}
}

// Households implements Roster. Household x has category x mod 4 (elderly
// alone, danger zone, no phone, disabled) and a phone only when x is odd, so
// that no_phone households have none; the village's grid workers take the
// households in turn.
func (d *demo) Households(code string, fn func(Household) bool) {
	i, ok := d.tree.byCode[code]
	if !ok || d.village[i] < 0 {
		return
	}
	v := &d.tree.divs[i]
	h := d.opt.HouseholdsPerVillage
	gw := d.officials[int(d.first[i])+len(villageRoles) : d.first[i+1]]
	for j := range h {
		x := uint64(d.village[i])*uint64(h) + uint64(j)
		hh := Household{
			ID:       "h" + strconv.FormatUint(x, 36),
			Head:     demoName(x, householdSalt),
			Address:  v.Name + strconv.Itoa(j+1) + "号",
			Category: householdCategories[x%uint64(len(householdCategories))],
			Division: v.Code,
		}
		if x%2 == 1 {
			hh.Phone = strconv.FormatUint(householdPhones+x, 10)
		}
		if len(gw) > 0 {
			hh.GridWorker = gw[j%len(gw)].ID
		}
		if !fn(hh) {
			return
		}
	}
}

// Counts implements Roster.
func (d *demo) Counts(code string) Counts {
	if i, ok := d.tree.byCode[code]; ok {
		return d.counts[i]
	}
	return Counts{}
}

// Person implements Roster, for officials and residents.
func (d *demo) Person(id string) (Person, bool) {
	if len(id) < 2 {
		return Person{}, false
	}
	x, err := strconv.ParseUint(id[1:], 36, 64)
	// Only the canonical spelling is an ID: no upper case, no leading zeros.
	if err != nil || strconv.FormatUint(x, 36) != id[1:] {
		return Person{}, false
	}
	switch id[0] {
	case 'o':
		if x < uint64(len(d.officials)) {
			return d.officials[x], true
		}
	case 'r':
		if r := uint64(d.opt.ResidentsPerVillage); r > 0 && x/r < uint64(len(d.villages)) {
			return d.resident(int32(x/r), int(x%r)), true
		}
	}
	return Person{}, false
}

// Household implements Roster.
func (d *demo) Household(id string) (Household, bool) {
	h := uint64(d.opt.HouseholdsPerVillage)
	if len(id) < 2 || id[0] != 'h' || h == 0 {
		return Household{}, false
	}
	x, err := strconv.ParseUint(id[1:], 36, 64)
	if err != nil || strconv.FormatUint(x, 36) != id[1:] || x/h >= uint64(len(d.villages)) {
		return Household{}, false
	}
	var found Household
	d.Households(d.tree.divs[d.villages[x/h]].Code, func(hh Household) bool {
		if hh.ID == id {
			found = hh
			return false
		}
		return true
	})
	return found, found.ID != ""
}

// ByPhone implements Roster, for officials and residents.
func (d *demo) ByPhone(phone string) (Person, bool) {
	n, err := strconv.ParseUint(phone, 10, 64)
	if err != nil || len(phone) != 11 {
		return Person{}, false
	}
	switch {
	case n >= officialPhones && n < householdPhones:
		return d.Person("o" + strconv.FormatUint(n-officialPhones, 36))
	case n >= residentPhones && n < officialPhones:
		return d.Person("r" + strconv.FormatUint(n-residentPhones, 36))
	}
	return Person{}, false
}

// Salts keep an official, a resident and a household with the same number
// from sharing a name.
const (
	officialSalt  = 0x6f
	residentSalt  = 0x72
	householdSalt = 0x68
)

// demoName picks a name for person n. Full names are built once, so that
// naming a million residents allocates nothing.
func demoName(n, salt uint64) string {
	names := demoNames()
	return names[mix(n^salt<<56)%uint64(len(names))]
}

var demoNames = sync.OnceValue(func() []string {
	var names []string
	for _, s := range surnames {
		for _, g := range givenNames {
			names = append(names, string(s)+g)
		}
	}
	return names
})

// mix is the splitmix64 finaliser: neighbouring numbers get unrelated names.
func mix(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

var surnames = []rune("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛段雷侯龙史陶黎贺顾毛郝龚邵万严武戴莫孔向汤普者")

var givenNames = []string{
	"伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
	"超", "霞", "平", "刚", "华", "斌", "鹏", "琳", "婷", "云", "红", "文", "波", "燕", "辉", "兰",
	"秀英", "秀兰", "桂英", "建华", "建国", "志强", "玉兰", "海燕", "金凤", "丽华", "春梅", "国庆",
	"德明", "永福", "世英", "家乐", "子涵", "雨轩", "浩然", "欣怡", "梓萱", "思远", "俊杰", "晓东",
	"慧敏", "建平", "凤英", "兰芳", "玉珍", "正华", "雪梅", "绍云", "丽萍", "自强", "玉仙", "文华",
}
