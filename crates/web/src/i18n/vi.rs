//! Vietnamese catalogue (the default language).

use super::Text;

pub(super) const TEXT: Text = Text {
    language_name: "Tiếng Việt",
    switch_to: "English",
    site_name: "ispeed",
    tagline: "Đo tốc độ Internet quốc gia",
    nav_test: "Đo tốc độ",
    nav_dashboard: "Thống kê",
    nav_methodology: "Phương pháp",
    nav_embed: "Gắn lên website",
    footer: "Số liệu đo tại máy chủ đo (không tin con số do thiết bị tự báo). Mã nguồn mở; dữ liệu đơn vị hành chính 2025.",
    skip_to_content: "Bỏ qua, đến nội dung",

    test_title: "Đo tốc độ Internet",
    start: "Bắt đầu đo",
    start_again: "Đo lại",
    running: "Đang đo…",
    phase_latency: "Đo độ trễ",
    phase_download: "Tải xuống",
    phase_upload: "Tải lên",
    phase_submit: "Đang gửi kết quả",
    phase_done: "Hoàn tất",
    choosing_test_point: "Đang chọn máy chủ đo gần nhất",
    test_point: "Máy chủ đo",
    download: "Tải xuống",
    upload: "Tải lên",
    latency: "Độ trễ",
    jitter: "Độ dao động trễ",
    loaded_latency: "Độ trễ khi tải",
    loaded_latency_download: "Độ trễ khi tải xuống",
    loaded_latency_upload: "Độ trễ khi tải lên",
    rpm: "Độ phản hồi (RPM)",
    rpm_help: "Số lượt hỏi–đáp mỗi phút khi đường truyền đang bận; càng cao càng tốt.",
    ipv6: "Hỗ trợ IPv6",
    yes: "Có",
    no: "Không",
    unknown: "Không rõ",
    isp: "Nhà mạng",
    ward: "Xã, phường",
    province: "Tỉnh, thành phố",
    mbps: "Mbit/s",
    ms: "ms",
    about_you: "Thông tin phép đo",
    access: "Loại kết nối",
    access_mobile: "Di động (3G/4G/5G)",
    access_fixed: "Cố định (Wi-Fi, cáp)",
    access_unknown: "Không rõ",
    access_prefilled: "Đã điền sẵn theo thông tin mạng của trình duyệt; hãy sửa nếu chưa đúng.",
    place: "Vị trí",
    use_location: "Dùng vị trí của tôi",
    location_why: "Vị trí chỉ dùng để xác định xã, phường của phép đo cho thống kê; toạ độ không được công bố. Bạn có thể chọn xã, phường thay vì chia sẻ vị trí.",
    location_ok: "Đã lấy vị trí",
    location_denied: "Không lấy được vị trí; hãy chọn xã, phường.",
    or_choose_ward: "hoặc chọn xã, phường",
    choose_province: "Chọn tỉnh, thành phố",
    search_ward: "Gõ để tìm xã, phường",
    place_optional: "Không bắt buộc: không có vị trí, kết quả chỉ được tính vào số liệu cả nước.",
    result_title: "Kết quả",
    result_saved: "Đã lưu và được tính vào thống kê.",
    result_pending: "Chưa gửi được kết quả; sẽ tự gửi lại khi có mạng.",
    result_rejected: "Máy chủ thu thập từ chối kết quả này.",
    result_not_counted: "Đã lưu nhưng không tính vào thống kê.",
    share: "Chia sẻ kết quả",
    copy_link: "Sao chép liên kết",
    copied: "Đã sao chép",
    error_test: "Phép đo không hoàn thành",
    error_busy: "Máy chủ đo đang bận; hãy thử lại sau ít giây.",
    failover: "Máy chủ đo không nhận phép đo; đang thử máy chủ tiếp theo",
    sign_in: "Đăng nhập",
    sign_out: "Đăng xuất",
    username: "Tên đăng nhập",
    password: "Mật khẩu",
    sign_in_failed: "Tên đăng nhập hoặc mật khẩu không đúng.",
    account_title: "Tài khoản",
    account_role: "Vai trò",
    account_exports: "Tải dữ liệu kết quả đo (không có mã thiết bị)",
    account_reports: "Báo cáo tháng",
    api_tokens: "Khoá API",
    api_token_name: "Tên khoá",
    api_token_create: "Tạo khoá",
    api_token_created: "Khoá mới (chỉ hiện một lần, hãy lưu lại):",
    api_token_revoke: "Thu hồi",
    api_token_revoked: "đã thu hồi",
    measured_by_server: "Tốc độ do máy chủ đo đếm và ký xác nhận.",
    no_javascript: "Cần bật JavaScript để đo tốc độ trong trình duyệt. Bạn vẫn xem được thống kê.",

    result_page_title: "Kết quả đo tốc độ",
    measured_at: "Thời điểm đo",
    run_your_own: "Đo mạng của bạn",

    dashboard_title: "Thống kê tốc độ Internet",
    dashboard_intro: "Trung vị các phép đo đã xác minh, theo tỉnh, nhà mạng và loại kết nối. Khoảng tin cậy 95% cho biết độ chắc chắn của trung vị.",
    period: "Kỳ",
    month: "Tháng",
    quarter: "Quý",
    last_12_months: "12 tháng gần nhất",
    metric: "Chỉ số",
    all_access: "Mọi loại kết nối",
    show: "Xem",
    map_title: "Bản đồ theo tỉnh, thành phố",
    median: "Trung vị",
    samples: "Số mẫu",
    devices: "Số thiết bị",
    ci95: "Khoảng tin cậy 95%",
    insufficient: "Chưa đủ mẫu",
    insufficient_help: "Ít mẫu hơn ngưỡng tối thiểu: chưa đủ căn cứ để đánh giá.",
    no_data: "Chưa có dữ liệu",
    isp_ranking: "Xếp hạng nhà mạng",
    rank: "Hạng",
    trend_title: "Diễn biến theo tháng",
    provinces_table: "Các tỉnh, thành phố",
    wards_table: "Các xã, phường",
    below_quota: "Chưa đạt chỉ tiêu mẫu",
    missing_samples: "Còn thiếu",
    sort_by_median: "Sắp theo trung vị",
    sort_by_samples: "Sắp theo số mẫu",
    national: "Cả nước",
    back_to_nation: "Về thống kê cả nước",
    wards_below_quota_summary: "xã, phường chưa đạt chỉ tiêu mẫu tháng",
    download_json: "Tải dữ liệu (JSON)",
    all_isps: "Mọi nhà mạng",
    p10_p90: "P10–P90",

    methodology_title: "Phương pháp đo và thống kê",

    embed_title: "Gắn công cụ đo lên website của đơn vị",
    embed_intro: "Các sở, ban, ngành có thể gắn công cụ đo, banner hoặc mã QR lên website và tại nơi tiếp dân. Mã chiến dịch giúp đơn vị biết có bao nhiêu phép đo đến từ banner, áp phích của mình.",
    embed_iframe: "Công cụ đo thu gọn (iframe)",
    embed_banner: "Banner",
    embed_qr: "Mã QR cho áp phích",
    embed_campaign: "Mã chiến dịch",
    embed_campaign_help: "Chữ, số, dấu chấm, gạch ngang, gạch dưới; tối đa 64 ký tự, ví dụ: so-tt-hanoi.poster",
    embed_campaign_counts: "Số phép đo theo mã chiến dịch",
    tests_brought: "Số phép đo",
    banner_title: "Đo tốc độ Internet",
    banner_subtitle: "Kiểm tra mạng của bạn — miễn phí, 30 giây",
    banner_cta: "Đo ngay",
    open_full_test: "Mở trang đo đầy đủ",

    not_found_title: "Không tìm thấy trang",
    not_found_body: "Địa chỉ này không có, hoặc mã tỉnh, xã, phường, kết quả không đúng.",
    bad_request_title: "Yêu cầu không hợp lệ",
    bad_request_body: "Một tham số trên địa chỉ không đúng:",
    unavailable_title: "Tạm thời không phục vụ được",
    unavailable_body: "Máy chủ đang quá tải; hãy thử lại sau ít giây.",
    go_home: "Về trang chủ",
};

/// Phương pháp, với các con số lấy từ mã nguồn và cấu hình đang chạy.
pub(super) fn methodology(f: &super::MethodologyFacts) -> String {
    format!(
        "<p>Trang này mô tả đúng cách phần mềm đang chạy đo và tính số liệu; mọi con số dưới đây \
         được lấy trực tiếp từ hằng số và cấu hình của hệ thống.</p>\n\
         <h2>1. Một phép đo</h2>\n<dl>\n\
         <dt>Độ trễ khi rảnh</dt><dd>{idle} lượt hỏi–đáp nối tiếp trước khi truyền dữ liệu; công bố trung vị; \
         độ dao động trễ là trung bình chênh lệch giữa hai lượt liên tiếp.</dd>\n\
         <dt>Tải xuống, tải lên</dt><dd>Mở {initial} luồng TCP song song, tăng tới {max} luồng khi tốc độ còn tăng; \
         dừng khi tốc độ ổn định và độ trễ khi tải đã ổn định, hoặc sau tối đa {secs} giây mỗi chiều. \
         Dữ liệu là ngẫu nhiên, không nén được.</dd>\n\
         <dt>Đếm ở máy chủ</dt><dd>Máy chủ đo đếm số byte thực sự đến được thiết bị (theo xác nhận TCP) hoặc đến được máy chủ, \
         lấy mẫu mỗi {sample} ms, loại bỏ giai đoạn khởi động chậm, rồi ký số (Ed25519) một biên nhận. \
         Con số do thiết bị tự báo chỉ dùng để đối chiếu, không bao giờ được công bố.</dd>\n\
         <dt>Độ trễ khi tải, RPM</dt><dd>Đo mỗi {probe} ms trong lúc truyền, lấy trong 1,5 giây cuối của mỗi chiều; \
         RPM = 60 000 / độ trễ trung bình (theo dự thảo IETF về độ phản hồi).</dd>\n\
         <dt>IPv6</dt><dd>Thiết bị có hỗ trợ IPv6 nếu phép đo chạy qua IPv6 hoặc kết nối được tới địa chỉ IPv6 của máy chủ đo trong 2 giây.</dd>\n</dl>\n\
         <h2>2. Kiểm tra kết quả</h2>\n<p>Máy chủ thu thập chỉ nhận kết quả có biên nhận hợp lệ của máy chủ đo đã được phê duyệt, \
         không quá {age} phút tuổi, không dùng lại; kết quả mà con số thiết bị báo lệch nhiều với con số máy chủ đếm \
         được lưu nhưng không tính vào thống kê. Nhà mạng được xác định từ địa chỉ IP mà máy chủ đo nhìn thấy; \
         xã, phường từ toạ độ (hoặc do người dùng chọn).</p>\n\
         <h2>3. Thống kê</h2>\n<dl>\n\
         <dt>Trung vị và phân vị</dt><dd>Tính từ bản phác thảo DDSketch có sai số tương đối không quá {acc} %, \
         gộp được theo tháng, quý, năm và theo cấp hành chính.</dd>\n\
         <dt>Khoảng tin cậy</dt><dd>Khoảng tin cậy {ci} % của trung vị theo thống kê thứ tự (phân phối nhị thức), không giả định phân phối.</dd>\n\
         <dt>Người đo nhiều lần</dt><dd>Mỗi thiết bị chỉ được tính tối đa {cap} phép đo mỗi ngày.</dd>\n\
         <dt>Số thiết bị</dt><dd>Đếm chính xác tới {exact} thiết bị, sau đó ước lượng bằng HyperLogLog (p = {p}, sai số khoảng 1,6 %).</dd>\n\
         <dt>Đủ mẫu</dt><dd>Một tỉnh, xã, phường, nhà mạng có dưới {pmin} mẫu mỗi tháng bị đánh dấu <em>chưa đủ mẫu</em>: \
         số liệu vẫn hiển thị nhưng không dùng để đánh giá. Mỗi xã, phường cần ít nhất {quota} mẫu mỗi tháng; \
         ngưỡng nhân theo số tháng của kỳ (quý ×3, 12 tháng ×12).</dd>\n</dl>\n",
        idle = f.idle_probes,
        initial = f.initial_streams,
        max = f.max_streams,
        secs = f.max_seconds.to_string().replace('.', ","),
        sample = f.sample_interval_ms,
        probe = f.loaded_probe_interval_ms,
        age = f.receipt_max_age_min,
        acc = f.sketch_accuracy_pct.to_string().replace('.', ","),
        ci = f.ci_level_pct,
        cap = f.heavy_tester_cap,
        exact = f.exact_devices_up_to,
        p = f.hll_precision,
        pmin = f.province_min,
        quota = f.ward_quota,
    )
}
