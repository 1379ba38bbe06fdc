package api

import (
	"html/template"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"warngate/region"
)

type divisionView struct {
	Code   string         `json:"code"`
	Name   string         `json:"name"`
	Level  string         `json:"level"`
	Counts *region.Counts `json:"counts,omitempty"`
}

func (s *server) view(d *region.Division, counts bool) divisionView {
	v := divisionView{Code: d.Code, Name: d.Name, Level: string(d.Level)}
	if counts {
		c := s.Roster.Counts(d.Code)
		v.Counts = &c
	}
	return v
}

func (s *server) getRegion(c *gin.Context) {
	d, ok := s.Tree.Get(c.Param("code"))
	if !ok {
		fail(c, http.StatusNotFound, "not_found", "no division with code "+c.Param("code")+"; codes are 12 digits, e.g. 530102000000 for 五华区", "code")
		return
	}
	path := []divisionView{}
	for _, p := range s.Tree.Path(d.Code) {
		if p != d {
			path = append(path, s.view(p, false))
		}
	}
	children := make([]divisionView, 0, len(d.Children))
	for _, ch := range d.Children {
		children = append(children, s.view(ch, true))
	}
	c.JSON(http.StatusOK, gin.H{"division": s.view(d, true), "path": path, "children": children})
}

func (s *server) searchRegions(c *gin.Context) {
	q := c.Query("q")
	if q == "" {
		fail(c, http.StatusBadRequest, "invalid_query", "give q, part of a division's name or code, e.g. ?q=五华", "q")
		return
	}
	limit, err := strconv.Atoi(c.DefaultQuery("limit", "20"))
	if err != nil || limit < 1 || limit > 200 {
		fail(c, http.StatusBadRequest, "invalid_query", "limit must be 1 to 200", "limit")
		return
	}
	out := []divisionView{}
	for _, d := range s.Tree.Search(q, limit) {
		out = append(out, s.view(d, false))
	}
	c.JSON(http.StatusOK, gin.H{"divisions": out})
}

var indexPage = template.Must(template.New("index").Parse(`<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>warngate 预警信息发布网关</title>
<style>body{font:16px/1.6 system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem}
.warn{background:#fff3cd;border:1px solid #c9a227;padding:.75rem}</style></head><body>
<h1>warngate 预警信息发布网关</h1>
{{if .Embedded}}<p class="warn">内存演示模式：不保存任何数据，仅供试用。<br>Embedded demo mode: nothing is kept; for trying only.</p>{{end}}
<ul>
<li><a href="/console/">值班控制台 (bureau console)</a> · <a href="/public/">公众预警查询 (public warnings)</a></li>
<li><code>POST /api/v1/warnings</code> 发布预警 (issue a warning)</li>
<li><code>GET /api/v1/warnings/{id}/progress</code> 送达进度 (delivery progress)</li>
<li><code>GET /api/v1/regions/530100000000</code> 行政区划与名册 (divisions and rosters)</li>
<li><a href="/metrics">/metrics</a> · <a href="/healthz">/healthz</a> · <a href="/readyz">/readyz</a></li>
</ul></body></html>`))

func (s *server) index(c *gin.Context) {
	c.Header("Content-Type", "text/html; charset=utf-8")
	indexPage.Execute(c.Writer, s.Options)
}
