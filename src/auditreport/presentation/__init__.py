"""What a report shows, built from the results bundle; the notebooks only call these.

- :mod:`.context`: the report's view of the bundle (audience, provider, rows) and its disclosure decisions.
- :mod:`.measure_sections`: one presenter for every measure (``measure_section(ctx, measure_id)``), built
  from :mod:`.measure_parts` (statistics as text, status words by direction, the measure's funnel).
- :mod:`.shared_sections`, :mod:`.provider_sections`, :mod:`.national_sections`, :mod:`.survival_sections`:
  the other sections, by subject, as typed :mod:`.blocks` (paragraphs, tables, charts), never HTML.
- :mod:`.display`: sections as notebook output (HTML through :mod:`.tables` and the Jinja templates in
  ``templates/``, charts as PNGs through :mod:`.png`), and :func:`.display.capture` for code that needs
  the HTML without a kernel.
- :mod:`.figures`: every chart; :mod:`.formatting`: numbers as text.
"""
