/* test-statustab.c - the status model (marks, the newest record per key,
 * the streamed JSON of `status --json` and /api/status), the per-package
 * history and dead letters of the status page, and the JSON string
 * escaper they use, checked against jansson. */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "jsonout.h"
#include "pkghist.h"
#include "statustab.h"

static ds_status rec(const char *site, const char *pkg, uint64_t v,
                     const char *state, uint64_t at)
{
    ds_status s = {.version = v, .at_ms = at};
    snprintf(s.site, sizeof(s.site), "%s", site);
    snprintf(s.package, sizeof(s.package), "%s", pkg);
    snprintf(s.state, sizeof(s.state), "%s", state);
    return s;
}

/* What f wrote, parsed by jansson (which must accept it). */
static json_t *parse(char *buf, size_t len)
{
    json_error_t je;
    json_t *j = json_loadb(buf, len, 0, &je);
    cr_assert_not_null(j, "not JSON (%s at %d): %.*s", je.text, je.position,
                       (int)len, buf);
    free(buf);
    return j;
}

Test(statustab, marks)
{
    ds_status pub = rec(DS_PUBLISHED, "app", 3, "published", 1000);
    ds_status at2 = rec("east", "app", 2, "installed", 1500);
    ds_status at3 = rec("east", "app", 3, "installed", 1500);
    ds_status failed = rec("east", "app", 3, "failed", 1500);
    cr_assert_eq(ds_stab_judge(&pub, &at3, 2000, 5000), DS_MARK_OK);
    cr_assert_eq(ds_stab_judge(&pub, &at2, 2000, 5000), DS_MARK_BEHIND);
    cr_assert_eq(ds_stab_judge(&pub, &at2, 7000, 5000), DS_MARK_LATE);
    cr_assert_eq(ds_stab_judge(&pub, &failed, 2000, 5000), DS_MARK_FAILED);
    cr_assert_eq(ds_stab_judge(&pub, NULL, 2000, 5000), DS_MARK_MISSING);
    cr_assert_eq(ds_stab_judge(&pub, NULL, 7000, 5000), DS_MARK_LATE);
    cr_assert_eq(ds_stab_judge(NULL, &at2, 7000, 5000), DS_MARK_OK);
    ds_status retired_pub = rec(DS_PUBLISHED, "app", 3, "retired", 1000);
    ds_status kept = rec("east", "app", 3, "retired", 1500);
    cr_assert_eq(ds_stab_judge(&retired_pub, &kept, 9000, 5000),
                 DS_MARK_RETIRED);
    cr_assert_eq(ds_stab_judge(&retired_pub, &at3, 9000, 5000), DS_MARK_LATE);
    cr_assert_eq(ds_stab_judge(&retired_pub, NULL, 9000, 5000),
                 DS_MARK_MISSING);
    /* Revived: published again after the site retired it. */
    ds_status pub4 = rec(DS_PUBLISHED, "app", 4, "published", 1000);
    cr_assert_eq(ds_stab_judge(&pub4, &kept, 2000, 5000), DS_MARK_BEHIND);
    cr_assert_str_eq(ds_mark_name(DS_MARK_LATE), "late");
    cr_assert_eq(ds_mark_code(DS_MARK_RETIRED), 'r');
}

Test(statustab, newest_per_key_and_names)
{
    ds_stab t = {0};
    char site[32], pkg[32];
    /* Enough keys to grow the index a few times. */
    for (int i = 0; i < 3000; i++) {
        snprintf(site, sizeof(site), "site%02d", i % 30);
        snprintf(pkg, sizeof(pkg), "pkg%03d", i / 30);
        ds_status s = rec(site, pkg, 1, "installed", (uint64_t)i);
        cr_assert_eq(ds_stab_put(&t, &s), 0);
    }
    uint64_t gen = t.gen;
    ds_status again = rec("site07", "pkg042", 9, "failed", 1);
    cr_assert_eq(ds_stab_put(&t, &again), 0);
    cr_assert_eq(t.n, 3000);
    cr_assert_eq(t.gen, gen, "an update is not a new key");
    const ds_status *r = ds_stab_find(&t, "site07", "pkg042");
    cr_assert_not_null(r);
    cr_assert_eq(r->version, 9);
    cr_assert_str_eq(r->state, "failed");
    cr_assert_null(ds_stab_find(&t, "site07", "nope"));
    /* site+package must not collide with another split of the bytes */
    cr_assert_null(ds_stab_find(&t, "site0", "7pkg042"));
    ds_status pub = rec(DS_PUBLISHED, "pkg000", 1, "published", 0);
    cr_assert_eq(ds_stab_put(&t, &pub), 0);
    ds_snames v;
    cr_assert_eq(ds_stab_names(&t, &v), 0);
    cr_assert_eq(v.np, 100);
    cr_assert_eq(v.ns, 30, "the published pseudo-site is not a site");
    cr_assert_str_eq(v.pkgs[0], "pkg000");
    cr_assert_str_eq(v.sites[29], "site29");
    for (size_t i = 1; i < v.np; i++)
        cr_assert_lt(strcmp(v.pkgs[i - 1], v.pkgs[i]), 0);
    ds_snames_free(&v);
    ds_stab_free(&t);
}

Test(statustab, json_has_the_shape_of_status_json)
{
    ds_stab t = {0};
    ds_status recs[] = {
        rec(DS_PUBLISHED, "app", 2, "published", 1000),
        rec("east", "app", 2, "installed", 1100),
        rec("west", "app", 1, "installed", 900),
        rec("east", "lib", 5, "failed", 1100),
    };
    snprintf(recs[3].detail, sizeof(recs[3].detail), "disk \"full\"\n\x01");
    for (size_t i = 0; i < 4; i++)
        cr_assert_eq(ds_stab_put(&t, &recs[i]), 0);
    ds_snames v;
    cr_assert_eq(ds_stab_names(&t, &v), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    int worst = 0;
    cr_assert_eq(ds_stab_write_json(f, &t, &v, NULL, NULL, 2000, 5000, &worst),
                 0);
    fclose(f);
    cr_assert_eq(worst, 1, "lib failed at east");
    json_t *j = parse(buf, len);
    json_t *pk = json_object_get(j, "packages");
    cr_assert_eq(json_array_size(pk), 2);
    json_t *app = json_array_get(pk, 0);
    cr_assert_str_eq(json_string_value(json_object_get(app, "package")), "app");
    cr_assert_eq(json_integer_value(json_object_get(app, "published")), 2);
    cr_assert(json_is_false(json_object_get(app, "retired")));
    json_t *west = json_array_get(json_object_get(app, "sites"), 1);
    cr_assert_str_eq(json_string_value(json_object_get(west, "site")), "west");
    cr_assert_str_eq(json_string_value(json_object_get(west, "mark")),
                     "behind");
    cr_assert_eq(json_integer_value(json_object_get(west, "at_ms")), 900);
    json_t *lib = json_array_get(pk, 1);
    cr_assert(json_is_null(json_object_get(lib, "published")));
    json_t *le = json_array_get(json_object_get(lib, "sites"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(le, "detail")),
                     "disk \"full\"\n\x01");
    json_t *lw = json_array_get(json_object_get(lib, "sites"), 1);
    cr_assert(json_is_null(json_object_get(lw, "version")));
    cr_assert_str_eq(json_string_value(json_object_get(lw, "mark")), "missing");
    json_decref(j);

    /* Filtered to one package and one site. */
    f = open_memstream(&buf, &len);
    cr_assert_eq(
        ds_stab_write_json(f, &t, &v, "app", "west", 2000, 5000, &worst), 0);
    fclose(f);
    j = parse(buf, len);
    pk = json_object_get(j, "packages");
    cr_assert_eq(json_array_size(pk), 1);
    cr_assert_eq(
        json_array_size(json_object_get(json_array_get(pk, 0), "sites")), 1);
    json_decref(j);
    ds_snames_free(&v);
    ds_stab_free(&t);
}

/* ds_json_put_str writes what jansson writes for the same string. */
static void same_as_jansson(const char *s)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(ds_json_put_str(f, s), 0);
    fclose(f);
    json_t *v = ds_json_text(s);
    char *want = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    cr_assert_str_eq(buf, want, "for %s", s);
    free(want);
    json_decref(v);
    free(buf);
}

Test(statustab, string_escaping_matches_jansson)
{
    same_as_jansson("plain");
    same_as_jansson("");
    same_as_jansson("quote \" backslash \\ slash /");
    same_as_jansson("\b\f\n\r\t \x01\x1f\x7f");
    same_as_jansson("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa6");
    same_as_jansson("not utf-8: \xff\xfe \xc3"); /* bytes become '?' */
    same_as_jansson("overlong \xc0\xaf, surrogate \xed\xa0\x80");
}

/* A package's history members, in an object of their own, parsed. */
static json_t *hist_json(const ds_pkghist *h, const char *package)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fputs("{\"x\":0", f);
    cr_assert_eq(ds_pkghist_write_json(f, h, package), 0);
    fputs("}", f);
    fclose(f);
    return parse(buf, len);
}

Test(pkghist, history_and_dead_letters)
{
    ds_pkghist *h;
    cr_assert_eq(ds_pkghist_new(&h), 0);
    ds_status recs[] = {
        rec(DS_PUBLISHED, "app", 1, "published", 100),
        rec("east", "app", 1, "installed", 110),
        rec("west", "app", 1, "installed", 120),
        rec(DS_PUBLISHED, "app", 2, "published", 200),
        rec("east", "app", 2, "failed", 210),
        rec("east", "app", 2, "installed", 220),
    };
    for (size_t i = 0; i < 6; i++)
        cr_assert_eq(ds_pkghist_status(h, &recs[i]), 0);
    cr_assert_eq(ds_pkghist_status(h, &recs[5]), 0); /* a repeat: ignored */
    for (int i = 0; i < DS_PKGHIST_DEAD_LETTERS + 3; i++) {
        ds_dead_letter_seen d = {
            .at_ms = 1000 + (uint64_t)i, .partition = 2, .offset = i};
        snprintf(d.site, sizeof(d.site), "east");
        snprintf(d.reason, sizeof(d.reason), "bad-schema");
        cr_assert_eq(ds_pkghist_dead_letter(h, "app", &d), 0);
    }
    cr_assert(ds_pkghist_has(h, "app"));
    cr_assert(!ds_pkghist_has(h, "other"));
    json_t *j = hist_json(h, "app");
    json_t *hist = json_object_get(j, "history");
    cr_assert_eq(json_array_size(hist), 2);
    json_t *v2 = json_array_get(hist, 0);
    cr_assert_eq(json_integer_value(json_object_get(v2, "version")), 2);
    cr_assert_eq(json_integer_value(json_object_get(v2, "published_at_ms")),
                 200);
    cr_assert_eq(json_array_size(json_object_get(v2, "installed")), 2,
                 "failed, then installed: both shown, the repeat not");
    json_t *v1 = json_array_get(hist, 1);
    cr_assert_eq(json_array_size(json_object_get(v1, "installed")), 2);
    json_t *dl = json_object_get(j, "dead_letters");
    cr_assert_eq(json_array_size(dl), DS_PKGHIST_DEAD_LETTERS);
    cr_assert_eq(
        json_integer_value(json_object_get(json_array_get(dl, 0), "offset")),
        DS_PKGHIST_DEAD_LETTERS + 2, "newest first");
    json_decref(j);
    ds_pkghist_free(h);
}

Test(pkghist, events_are_bounded)
{
    ds_pkghist *h;
    cr_assert_eq(ds_pkghist_new(&h), 0);
    for (uint64_t i = 0; i < 5 * DS_PKGHIST_EVENTS; i++) {
        ds_status s = rec("east", "app", i, "installed", i);
        cr_assert_eq(ds_pkghist_status(h, &s), 0);
    }
    json_t *j = hist_json(h, "app");
    json_t *hist = json_object_get(j, "history");
    cr_assert_eq(json_array_size(hist), DS_PKGHIST_VERSIONS);
    cr_assert_eq(
        json_integer_value(json_object_get(json_array_get(hist, 0), "version")),
        5 * DS_PKGHIST_EVENTS - 1);
    json_decref(j);
    ds_pkghist_free(h);
}
