from django.urls import path

from . import views

app_name = "comparisons"

urlpatterns = [
    path("", views.index, name="index"),
    path("new/<uuid:session_id>/<uuid:run_id>/", views.new, name="new"),
    path("from-runs/<uuid:session_id>/", views.from_runs, name="from_runs"),
    path("results/", views.results, name="results"),
    path("suites/", views.suites, name="suites"),
    path("suites/<int:suite_id>/", views.suite_detail, name="suite"),
    path("suites/<int:suite_id>/run", views.suite_run, name="suite_run"),
    path("results.csv", views.results_csv, name="results_csv"),
    path("results.json", views.results_json, name="results_json"),
    path("<uuid:comparison_id>/", views.detail, name="detail"),
    path("<uuid:comparison_id>/turns/<int:turn>/columns/<int:column>/", views.cell, name="cell"),
    path("<uuid:comparison_id>/turns/<int:turn>/vote", views.vote, name="vote"),
    path("<uuid:comparison_id>/columns/<int:column>/open", views.open_branch, name="open_branch"),
    path("<uuid:comparison_id>/resume", views.resume, name="resume"),
    path("<uuid:comparison_id>/reveal", views.reveal, name="reveal"),
    path("<uuid:comparison_id>/judge/", views.judge, name="judge"),
    path("<uuid:comparison_id>/judgings/<int:judging_id>/", views.judging_detail, name="judging"),
    path("<uuid:comparison_id>/judgings/<int:judging_id>/record", views.judging_record, name="judging_record"),
    path("<uuid:comparison_id>/judgings/<int:judging_id>/events", views.judging_events, name="judging_events"),
]
